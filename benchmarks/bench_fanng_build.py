"""FANNG build variants side by side with faiss exact search, in one run.

For the clustered embeddings of ``bench_mining.py`` (SOP size by default) it
times, one after the other in one process:

* faiss ``IndexFlatL2`` exact search of every point's ``k + 1`` nearest,
* each FANNG variant given with ``--variants``: ``default`` (batched parallel
  traverse-add + locality order), ``sequential`` (batch 1 = FANNG Alg. 4
  literally, original vertex order), ``batched`` (no locality order),
  ``ordered`` (locality order, batch 1), ``no_principal_axes`` (default but
  unrotated: from 128-d the greedy sums then rarely stop early); build to the
  98 % success target +
  backtrack search from every vertex,
* faiss again (the machine is shared: the two faiss times bracket the run),

and prints wall and CPU seconds, ``total / faiss`` (against the mean of the
two faiss times) and recall@k against faiss. ``--repeats R`` runs R rounds of
(variants, faiss), each round's ratio against the faiss runs on either side of
it, and prints the median and range of the ratios. ``--budgets`` adds a sweep of
search budgets on the default variant's graph.

    python benchmarks/bench_fanng_build.py --n 59551 --dim 64 --variants default sequential
    python benchmarks/bench_fanng_build.py --n 59551 --dim 64 --variants default --repeats 5
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from bench_mining import CLASSES, clustered_embeddings  # noqa: E402
from symm_keras.neighbors import fanng  # noqa: E402

VARIANTS = {
    "default": {},
    "sequential": {"batch_size": 1, "reorder": False},
    "batched": {"reorder": False},
    "ordered": {"batch_size": 1},
    "no_principal_axes": {"use_principal_axes": False},
}


def faiss_knn(x, k):
    import faiss

    wall, cpu = time.perf_counter(), time.process_time()
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, idx = index.search(x, k + 1)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    exact = np.array([row[row != i][:k] for i, row in enumerate(idx)])
    return exact, wall, cpu


def recall(approx, exact):
    return float(np.mean([np.intersect1d(a[a >= 0], e).size / e.size for a, e in zip(approx, exact)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=59551)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--variants", nargs="+", default=["default", "sequential"], choices=sorted(VARIANTS))
    parser.add_argument("--budgets", type=int, nargs="*", default=[])
    parser.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of (variants, faiss); each round's ratio uses the faiss runs around it")
    args = parser.parse_args()

    x, _ = clustered_embeddings(args.n, CLASSES.get(args.n, max(2, args.n // 5)), args.dim)
    fanng.fanng_neighbours(x[:500], 5, batch_size=1, reorder=False)  # compile outside the timings
    fanng.fanng_neighbours(x[:500], 5)
    print(f"N={args.n} dim={args.dim} k={args.k} cpus={os.cpu_count()}")
    exact, faiss_wall, faiss_cpu = faiss_knn(x, args.k)
    faiss_times = [(faiss_wall, faiss_cpu)]
    print(f"  faiss exact            {faiss_wall:7.2f}s wall {faiss_cpu:7.1f}s cpu", flush=True)
    ratios = {name: [] for name in args.variants}
    for _ in range(args.repeats):
        rows = [run_variant(name, x, exact, args) for name in args.variants]
        _, faiss_wall, faiss_cpu = faiss_knn(x, args.k)
        faiss_times.append((faiss_wall, faiss_cpu))
        print(f"  faiss exact again      {faiss_wall:7.2f}s wall {faiss_cpu:7.1f}s cpu", flush=True)
        base = 0.5 * (faiss_times[-2][0] + faiss_times[-1][0])  # the faiss runs bracketing this round
        base_cpu = 0.5 * (faiss_times[-2][1] + faiss_times[-1][1])
        for name, total_wall, total_cpu, rec in rows:
            ratios[name].append(total_wall / base)
            print(f"  {name:10s} total / faiss: {total_wall / base:5.2f}x wall, "
                  f"{total_cpu / base_cpu:5.2f}x cpu, recall@{args.k}={rec:.4f}", flush=True)
    if args.repeats > 1:
        for name, values in ratios.items():
            print(f"  {name:10s} total / faiss over {args.repeats} rounds: median {np.median(values):.2f}x, "
                  f"range {min(values):.2f}-{max(values):.2f}x wall")


def run_variant(name, x, exact, args):
    """Build + search one variant; prints its line, returns (name, wall s, CPU s, recall)."""
    wall, cpu = time.perf_counter(), time.process_time()
    graph = fanng.build_fanng(x, num_threads=args.threads, **VARIANTS[name])
    build_wall, build_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    idx, _ = fanng.fanng_search(graph, args.k, num_threads=args.threads)
    search_wall, search_cpu = time.perf_counter() - wall, time.process_time() - cpu
    rec = recall(idx, exact)
    print(f"  fanng {name:10s} build {build_wall:7.2f}s + search {search_wall:6.2f}s wall "
          f"({build_cpu:.1f} + {search_cpu:.1f}s cpu), recall@{args.k}={rec:.4f}, "
          f"{graph.traverse_adds / args.n:.0f}N traverse-adds, batch {graph.batch_size}, "
          f"{graph.distance_calculations / graph.traverse_adds:.0f} distances each", flush=True)
    if name == "default":
        for budget in args.budgets:
            wall = time.perf_counter()
            idx, _ = fanng.fanng_search(graph, args.k, budget=budget, num_threads=args.threads)
            seconds = time.perf_counter() - wall
            print(f"    budget {budget:5d}: search {seconds:6.2f}s, total {build_wall + seconds:7.2f}s, "
                  f"recall@{args.k}={recall(idx, exact):.4f}", flush=True)
    return name, build_wall + search_wall, build_cpu + search_cpu, rec


if __name__ == "__main__":
    main()
