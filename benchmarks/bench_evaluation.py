"""Evaluation at SOP scale: time and peak extra memory, side by side in one run.

    python benchmarks/bench_evaluation.py                       # 60,502 × 512, 11,316 classes
    python benchmarks/bench_evaluation.py --num_items 15000 --methods keras,faiss_ip,numpy_gemm

Data: clustered random embeddings shaped like the SOP test set — 11,316
classes of 2–12+ images (mean ≈ 5.35), class centres N(0, I), points = centre
+ ``--noise`` · N(0, I), L2-normalised (cosine retrieval as in the papers).

Retrieval methods (every one answers the same question: Recall@K for
K = 1, 10, 100, 1000, R-precision and MAP@R):

* ``keras`` / ``numpy``: ``symm_keras.evaluation.retrieval_metrics`` on the
  active Keras backend / on numpy;
* ``faiss_ip`` / ``faiss_l2``: faiss exact ``IndexFlatIP`` / ``IndexFlatL2``
  search of all queries at k = max K + 1 (what an exact faiss evaluation such
  as pytorch-metric-learning's needs), metrics not included;
* ``numpy_gemm``: numpy blocked GEMM + ``argpartition`` at k = max K + 1 per
  block, the plain reference;
* ``torch_topk``: PyTorch on its GPU, blocked ``mm`` + ``topk`` at k = max K + 1
  (the GPU reference; PyTorch is not a symm_keras dependency).

Clustering (``--kmeans``, e.g. ``faiss,keras``): k-means with k = number of
classes + NMI + pair-counting F1.

Peak extra memory = the process's peak resident set during the method minus
its resident set just before (Linux ``/proc/self/status`` VmHWM, reset through
``/proc/self/clear_refs``). Ratios are against ``faiss_ip`` measured in the
same run (``--reference`` picks another, e.g. ``torch_topk`` on a GPU);
``--repeats 2`` times every method twice and keeps the second (compiled,
warm) time.
"""

import argparse
import os
import time

import numpy as np


def sop_like(num_items, num_classes, dim, noise, seed):
    """Labels with SOP's class-size profile and clustered, L2-normalised float32 embeddings."""
    rng = np.random.default_rng(seed)
    sizes = np.full(num_classes, 2)
    extra = num_items - 2 * num_classes
    if extra < 0:
        raise SystemExit(f"--num_items must be at least 2 × --num_classes ({2 * num_classes}).")
    sizes += np.bincount(rng.integers(0, num_classes, size=extra), minlength=num_classes)
    labels = rng.permutation(np.repeat(np.arange(num_classes), sizes))
    x = np.empty((num_items, dim), dtype=np.float32)
    centres = rng.standard_normal((num_classes, dim), dtype=np.float32)
    for start in range(0, num_items, 8192):
        block = labels[start : start + 8192]
        x[start : start + 8192] = centres[block] + noise * rng.standard_normal((block.size, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def _status(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def measure(fn):
    """``(result, seconds, peak extra bytes)`` of ``fn()``."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    before = _status("VmRSS")
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    return result, seconds, max(0, _status("VmHWM") - before)


def faiss_search(x, k, kind):
    import faiss

    index = faiss.IndexFlatIP(x.shape[1]) if kind == "ip" else faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, neighbours = index.search(x, k)
    return neighbours


def numpy_gemm_top_k(x, k, block_rows=1024):
    out = np.empty((x.shape[0], k), dtype=np.int64)
    for start in range(0, x.shape[0], block_rows):
        scores = x[start : start + block_rows] @ x.T
        out[start : start + block_rows] = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return out


def torch_top_k(x, k, block_rows=8192):
    import torch

    data = torch.from_numpy(x).cuda()
    out = torch.empty((x.shape[0], k), dtype=torch.int64, device="cuda")
    for start in range(0, x.shape[0], block_rows):
        out[start : start + block_rows] = torch.topk(data[start : start + block_rows] @ data.T, k, dim=1).indices
    return out.cpu().numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_items", type=int, default=60502)
    parser.add_argument("--num_classes", type=int, default=None, help="default: num_items / 5.3466 (SOP: 11,316)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=2.2)
    parser.add_argument("--recall_ks", default="1,10,100,1000")
    parser.add_argument("--methods", default="keras,numpy,faiss_ip,faiss_l2,numpy_gemm")
    parser.add_argument("--kmeans", default="", help="comma list of sklearn,faiss,keras (empty: no clustering)")
    parser.add_argument("--kmeans_max_iter", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default="faiss_ip", help="method the ratios are taken against")
    parser.add_argument("--repeats", type=int, default=1, help="time each method this often, keep the last")
    args = parser.parse_args()

    import keras

    from symm_keras.evaluation import kmeans, normalized_mutual_info, pair_counting_f1, retrieval_metrics

    num_classes = args.num_classes or round(args.num_items / (60502 / 11316))
    ks = tuple(int(k) for k in args.recall_ks.split(","))
    x, labels = sop_like(args.num_items, num_classes, args.dim, args.noise, args.seed)
    print(
        f"data: {args.num_items} × {args.dim} float32, {num_classes} classes (mean size "
        f"{args.num_items / num_classes:.2f}), noise {args.noise}; Keras backend {keras.backend.backend()}; "
        f"{os.cpu_count()} CPU(s); load average {os.getloadavg()[0]:.1f}"
    )
    rows = []
    methods = [m for m in args.methods.split(",") if m]
    for method in methods:
        if method in ("keras", "numpy"):
            fn = lambda m=method: retrieval_metrics(x, labels, recall_ks=ks, backend=m)[0]  # noqa: E731
        elif method in ("faiss_ip", "faiss_l2"):
            fn = lambda m=method: faiss_search(x, max(ks) + 1, m[-2:])  # noqa: E731
        elif method == "numpy_gemm":
            fn = lambda: numpy_gemm_top_k(x, max(ks) + 1)  # noqa: E731
        elif method == "torch_topk":
            fn = lambda: torch_top_k(x, max(ks) + 1)  # noqa: E731
        else:
            raise SystemExit(f"unknown method {method!r}")
        for _ in range(args.repeats):
            result, seconds, extra = measure(fn)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result.items()) if isinstance(result, dict) else ""
        rows.append((f"retrieval/{method}", seconds, extra))
        print(f"retrieval/{method:10s} {seconds:9.2f} s  peak extra {extra / 2**30:6.2f} GiB  {shown}", flush=True)
    for implementation in [m for m in args.kmeans.split(",") if m]:

        def cluster(implementation=implementation):
            result = kmeans(x, num_classes, implementation=implementation, seed=args.seed, max_iter=args.kmeans_max_iter)
            return result, normalized_mutual_info(labels, result.assignments), pair_counting_f1(labels, result.assignments)

        for _ in range(args.repeats):
            (result, nmi, f1), seconds, extra = measure(cluster)
        rows.append((f"nmi_f1/{implementation}", seconds, extra))
        print(
            f"nmi_f1/{implementation:13s} {seconds:9.2f} s  peak extra {extra / 2**30:6.2f} GiB  nmi {nmi:.4f} "
            f"f1 {f1:.4f} ({result.iterations} iterations, {result.inits} init, seed {result.seed})",
            flush=True,
        )
    reference = dict((name, seconds) for name, seconds, _ in rows).get(f"retrieval/{args.reference}")
    if reference:
        print(f"\ntime / retrieval/{args.reference} (same run):")
        for name, seconds, _ in rows:
            print(f"  {name:22s} {seconds / reference:6.2f}×")


if __name__ == "__main__":
    main()
