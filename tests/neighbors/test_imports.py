"""numba is imported only by the parts that need it: the tiled host search, FANNG, triplet selection.

Losses, layers, metrics, evaluation and the exact search import and run without it.
"""

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BLOCK_NUMBA = """
import importlib.abc, sys

class NoNumba(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("numba", "llvmlite"):
            raise ImportError(f"{name} blocked by the test")
        return None

sys.meta_path.insert(0, NoNumba())
"""


def run(code, block_numba):
    script = (BLOCK_NUMBA if block_numba else "") + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_evaluation_neighbors_and_prim_tree_import_and_run_without_numba():
    out = run("""
        import numpy as np, pytest
        import symm_keras.evaluation, symm_keras.mining, symm_keras.neighbors
        import symm_keras.layers, symm_keras.losses, symm_keras.metrics  # DAMLRRM's loss uses the Prim tree
        from symm_keras.neighbors import exact, exact_knn, neighbour_lists
        assert not exact.numba_available() and not exact.uses_tiled_host_path("numpy")
        x = np.random.default_rng(0).normal(size=(50, 4)).astype("float32")
        idx, dist = exact_knn(x, 3, metric="squared_euclidean", backend="numpy")
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        assert (idx == np.argsort(d, axis=1, kind="stable")[:, :3]).all()
        result = symm_keras.evaluation.evaluate_embeddings(x, np.arange(50) % 5, recall_ks=(1,), clustering=False)
        assert 0.0 <= result.recall[1] <= 1.0
        symm_keras.mining.prim_minimum_spanning_forest
        for call in (lambda: neighbour_lists(x, 3, source="fanng"), lambda: symm_keras.neighbors.build_fanng,
                     lambda: symm_keras.mining.epoch_triplets):
            with pytest.raises(ImportError, match="numba"):
                call()
        print("NO_NUMBA_OK")
    """, block_numba=True)
    assert "NO_NUMBA_OK" in out


def test_importing_evaluation_neighbors_and_mining_does_not_load_numba():
    out = run("""
        import sys
        import symm_keras.evaluation, symm_keras.mining, symm_keras.neighbors
        print("loaded:", sorted(name for name in ("numba", "llvmlite") if name in sys.modules))
        symm_keras.neighbors.fanng_search  # first use loads FANNG, and numba with it
        print("after fanng:", "numba" in sys.modules)
    """, block_numba=False)
    assert "loaded: []" in out and "after fanng: True" in out, out
