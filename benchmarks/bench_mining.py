"""Smart Mining neighbour sources side by side: time and recall against exact kNN.

For SOP-size (59,551) and CUB-size (5,864) clustered, unit-norm embeddings at
64-d and 512-d, one run times each neighbour source

* ``exact``  — symm_keras exact kNN: on a CPU, BLAS tile products merged into
  per-query heaps by numba, only the tiles on and above the diagonal (the
  search is symmetric); on an accelerator, blocked products on the Keras backend,
* ``faiss``  — faiss ``IndexFlatL2`` exact search,
* ``pynndescent`` — NN-descent graph,
* ``fanng``  — FANNG traverse-add build (to the 98 % success target) + backtrack
  search from every vertex (``--fanng-budget``, or ``--fanng-target-recall``:
  the budget calibrated on sampled queries, included in the time),

reports recall@k of each against ``exact`` and the time of the epoch's triplet
selection (Algorithm 1, ``epoch_triplets``). Ratios are taken within the run.
Compiled kernels (numba: exact, fanng, pynndescent) are loaded/compiled on a
small set before the timings; the exact source's first call in the process is
printed separately. ``--repeats N`` times every source N times, in interleaved
rounds, and keeps each one's best (the machines here are shared and noisy).

Embeddings: ``C`` classes with centres drawn in a ``latent_dim``-dimensional
space (default 16: trained embeddings have a low intrinsic dimension),
within-class spread ``spread``, mapped into ``dim`` by a random orthonormal
map, plus isotropic noise ``noise / sqrt(dim)`` per coordinate, L2-normalised.
``--latent-dim 0`` draws everything in the full ``dim`` (a much harder case).

    python benchmarks/bench_mining.py                       # all four settings
    python benchmarks/bench_mining.py --sizes 5864 --dims 64
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from symm_keras.neighbors import neighbour_lists  # noqa: E402
from symm_keras.mining.triplet_selection import epoch_triplets  # noqa: E402

CLASSES = {59551: 11318, 5864: 100}  # SOP and CUB training splits


def clustered_embeddings(n, n_classes, dim, latent_dim=16, spread=0.5, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % n_classes)
    width = dim if latent_dim <= 0 else min(latent_dim, dim)
    centres = rng.normal(size=(n_classes, width))
    z = centres[labels] + spread * rng.normal(size=(n, width))
    if width < dim:
        basis, _ = np.linalg.qr(rng.normal(size=(dim, width)))
        z = z @ basis.T
    x = z / np.linalg.norm(z, axis=1, keepdims=True) + noise * rng.normal(size=(n, dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def recall(approx, exact):
    k = exact.shape[1]
    hits = [np.intersect1d(a[a >= 0], e).size for a, e in zip(approx, exact)]
    return float(np.sum(hits)) / (k * len(exact))


def time_source(x, source, args):
    """One call of ``neighbour_lists``: returns ((idx, dist), seconds, details printed for FANNG)."""
    options = {}
    if source == "fanng":
        options = {"budget": args.fanng_budget, "target_recall": args.fanng_target_recall, "return_graph": True}
    if source in ("exact", "faiss") and args.threads:
        options = {"num_threads": args.threads}
    start = time.perf_counter()
    out = neighbour_lists(x, args.k, source=source, **options)
    seconds = time.perf_counter() - start
    if source != "fanng":
        return out, seconds, ""
    graph = out[2]
    extra = (f" build={graph.build_seconds:.1f}s search={seconds - graph.build_seconds:.1f}s "
             f"traverse_adds={graph.traverse_adds / len(x):.0f}N success={graph.success_rate:.3f} "
             f"mean_degree={graph.degrees.mean():.1f} batch={graph.batch_size} "
             f"calcs_per_traverse_add={graph.distance_calculations / graph.traverse_adds:.0f}")
    if graph.search_calibration is not None:  # budget chosen for --fanng-target-recall
        calibration = graph.search_calibration
        extra += (f" budget={calibration.budget} (for recall@{args.k} >= {calibration.target_recall}: "
                  f"{calibration.recall:.4f} on {calibration.queries} sampled queries)")
    return out[:2], seconds, extra


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5864, 59551])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--sources", nargs="+", default=["exact", "faiss", "pynndescent", "fanng"])
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--spread", type=float, default=0.5)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--fanng-budget", type=int, default=None)
    parser.add_argument("--fanng-target-recall", type=float, default=None,
                        help="calibrate FANNG's search budget for this recall@k instead of --fanng-budget")
    parser.add_argument("--repeats", type=int, default=1, help="best of N rounds for every source")
    parser.add_argument("--threads", type=int, default=None,
                        help="worker threads of exact and faiss (default: all CPUs)")
    args = parser.parse_args()

    import keras

    print(f"backend={keras.backend.backend()} cpus={os.cpu_count()} k={args.k} "
          f"latent_dim={args.latent_dim} spread={args.spread} noise={args.noise}")
    warm = clustered_embeddings(300, 10, 8, seed=1)[0]
    if "exact" in args.sources:  # 3,000 rows: more than one tile, so every kernel loads
        start = time.perf_counter()
        neighbour_lists(clustered_embeddings(3000, 10, 8, seed=1)[0], 5, source="exact")
        print(f"exact: first call in this process (loads the numba kernels), 3,000 x 8: "
              f"{time.perf_counter() - start:.2f}s")
    for source in set(args.sources) & {"fanng", "pynndescent"}:  # numba compiles outside the timings
        neighbour_lists(warm, 5, source=source)
    for n in args.sizes:
        for dim in args.dims:
            x, labels = clustered_embeddings(n, CLASSES.get(n, max(2, n // 5)), dim, args.latent_dim,
                                             args.spread, args.noise)
            results = {}
            for _ in range(args.repeats):  # rounds interleave the sources; each keeps its best
                for source in args.sources:
                    out, seconds, extra = time_source(x, source, args)
                    if source not in results or seconds < results[source][1]:
                        results[source] = (out, seconds, extra)
            exact = results["exact"][0][0] if "exact" in results else None
            same = (labels[exact[:, 0]] == labels).mean() if exact is not None else float("nan")
            print(f"\nN={n} dim={dim} classes={CLASSES.get(n)} (exact 1-NN same class: {same:.3f})")
            base = results["faiss"][1] if "faiss" in results else None
            for source, (out, seconds, extra) in results.items():
                rec = recall(out[0], exact) if exact is not None else float("nan")
                ratio = f" {seconds / base:5.2f}x faiss" if base else ""
                print(f"  {source:12s} {seconds:8.2f}s{ratio}  recall@{args.k}={rec:.4f}{extra}")
            if exact is not None:
                idx, dist = results["exact"][0]
                start = time.perf_counter()
                epoch = epoch_triplets(idx, dist, labels, kappa=1.0, num_batches=max(1, n // 40),
                                       triplets_per_batch=40, mined_share=1.0, seed=0)
                sel = time.perf_counter() - start
                print(f"  triplet selection (Alg. 1, {len(epoch.triplets)} triplets, kappa=1): {sel:.2f}s, "
                      f"mined share {epoch.mined_share:.3f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
