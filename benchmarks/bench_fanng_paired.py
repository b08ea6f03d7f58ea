"""FANNG greedy searches of the current code against a git revision, paired batch by batch.

Whole-build timings on the shared machines here swing by up to 2× within
minutes, more than most changes to the build are worth. This script pairs the
two versions on identical work instead: it runs one FANNG build of the
clustered embeddings of ``bench_mining.py`` with the current code and, for
every traverse-add batch, also runs the baseline revision's ``_search_batch``
on the same frozen graph, alternating which version goes first, asserts that
both give the same stop vertices and outcomes, and lets the build merge the
current version's results. It prints the ratio of the two total search times
and the median and quartiles of the per-batch ratios (current / baseline).

Each version reads the rows the way it lays them out itself: the current code's
``build_fanng`` rows, and for the baseline a fresh numpy copy of them, unless
the baseline has ``_cache_aligned`` too (the byte offsets are printed). The
baseline's ``_search_batch`` must take the current one's arguments; batches
below ``fanng._MIN_PARALLEL_BATCH`` pairs (N < 16,384 by default) do not call
it, so use SOP-size sets.

    python benchmarks/bench_fanng_paired.py --baseline b36f078 --dim 64
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from bench_mining import CLASSES, clustered_embeddings  # noqa: E402
from symm_keras.neighbors import fanng  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def load_revision(revision, folder):
    """FANNG's module as it was at ``revision``, imported as its own module.

    ``symm_keras/neighbors/fanng.py``, or before the neighbour-search package
    ``symm_keras/mining/fanng.py`` (its ``locality_order`` import then points
    at the function's current home).
    """
    source = None
    for path in ("symm_keras/neighbors/fanng.py", "symm_keras/mining/fanng.py"):
        shown = subprocess.run(["git", "-C", ROOT, "show", f"{revision}:{path}"], capture_output=True, text=True)
        if shown.returncode == 0:
            source = shown.stdout
            break
    if source is None:
        raise SystemExit(f"no FANNG module at revision {revision}")
    source = source.replace("from symm_keras.evaluation.knn import locality_order",
                            "from symm_keras.neighbors.tiled import locality_order")
    path = os.path.join(folder, "fanng_baseline.py")
    with open(path, "w") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location("fanng_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PairedSearches:
    """Stands in for ``fanng._search_batch``: times it and the baseline module's on each batch."""

    def __init__(self, current_search, baseline):
        self.current_search, self.baseline = current_search, baseline
        self.rows = {}
        self.times = {"current": [], "baseline": []}

    def baseline_rows(self, head, tail):
        key = (head.ctypes.data, tail.ctypes.data)
        if key not in self.rows:
            copy = getattr(self.baseline, "_cache_aligned", np.array)
            self.rows = {key: (copy(head), copy(tail))}
            offsets = [a.ctypes.data % 64 if a.size else "-" for a in (head, tail, *self.rows[key])]
            print(f"  row offsets (bytes past a cache line): current head {offsets[0]} tail {offsets[1]}, "
                  f"baseline head {offsets[2]} tail {offsets[3]}", flush=True)
        return self.rows[key]

    def __call__(self, head, tail, adj, lens, deg, pairs, lo, hi, slots, span, *outputs):
        base_head, base_tail = self.baseline_rows(head, tail)
        spare = [np.empty_like(a) for a in outputs]
        runs = [("current", self.current_search, head, tail, outputs),
                ("baseline", self.baseline._search_batch, base_head, base_tail, spare)]
        if len(self.times["current"]) % 2:
            runs.reverse()
        for name, search, rows_head, rows_tail, out in runs:
            start = time.perf_counter()
            search(rows_head, rows_tail, adj, lens, deg, pairs, lo, hi, slots, span, *out)
            self.times[name].append(time.perf_counter() - start)
        count = hi - lo
        for got, want in zip(outputs[:3], spare[:3]):  # stop vertex, its distance, found
            np.testing.assert_array_equal(got[:count], want[:count])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="git revision whose fanng.py is the baseline")
    parser.add_argument("--n", type=int, default=59551)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    args = parser.parse_args()
    if fanng.default_build_batch(args.n) < fanng._MIN_PARALLEL_BATCH:
        parser.error(f"--n {args.n} gives traverse-add batches of {fanng.default_build_batch(args.n)} pairs, "
                     f"which the build searches without _search_batch (below {fanng._MIN_PARALLEL_BATCH}); "
                     f"pairing needs --n >= {16 * fanng._MIN_PARALLEL_BATCH}")

    x, _ = clustered_embeddings(args.n, CLASSES.get(args.n, max(2, args.n // 5)), args.dim)
    with tempfile.TemporaryDirectory() as folder:
        baseline = load_revision(args.baseline, folder)
        for module in (fanng, baseline):  # compile outside the timings
            module.build_fanng(x[:20000], num_threads=args.threads)
        paired = PairedSearches(fanng._search_batch, baseline)
        fanng._search_batch = paired
        try:
            graph = fanng.build_fanng(x, num_threads=args.threads)
        finally:
            fanng._search_batch = paired.current_search
    current, base = (np.asarray(paired.times[k]) for k in ("current", "baseline"))
    ratios = current / base
    print(f"N={args.n} dim={args.dim}: {len(ratios)} batches, {graph.traverse_adds / args.n:.0f}N searches")
    print(f"  greedy searches: current {current.sum():.2f} s, baseline ({args.baseline}) {base.sum():.2f} s")
    print(f"  current / baseline: {current.sum() / base.sum():.3f} of the totals; per batch median "
          f"{np.median(ratios):.3f}, quartiles {np.percentile(ratios, 25):.3f}-{np.percentile(ratios, 75):.3f}")


if __name__ == "__main__":
    main()
