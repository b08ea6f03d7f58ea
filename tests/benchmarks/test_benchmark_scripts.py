"""The benchmark scripts run end to end on tiny inputs and print what their docs quote.

The figures in README/docs come from these scripts, so a script that no longer
runs (a renamed argument, a moved function) would leave those figures with no
command to repeat them. Each script runs in a subprocess with its own
arguments shrunk to seconds of work; the checks are on the lines it prints.
Lines are compared with their whitespace collapsed (``words``), so a change
of column widths does not fail a test; the values themselves are parsed.
The scripts that take a minute even when shrunk (a GoogLeNet step, JPEG
decoding, two FANNG builds) run under ``-m slow``; their GPU-only options
(``--torch``, ``torch_topk``) are not run here.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATIO = r"\d+\.\d+x"


def launch(name, *args, timeout=600):
    """Run ``benchmarks/<name>`` with ``args`` in a subprocess; returns the finished process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-u", os.path.join(REPO, "benchmarks", name), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def words(text):
    """``text`` with each line stripped and every run of spaces or tabs collapsed to one space."""
    return "\n".join(" ".join(line.split()) for line in text.splitlines())


def run_script(name, *args):
    """Run a script that must succeed; returns its standard output through :func:`words`."""
    done = launch(name, *args)
    assert done.returncode == 0, f"{name} {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return words(done.stdout)


def test_bench_mining_prints_every_source_against_faiss_with_recall():
    pytest.importorskip("faiss")
    out = run_script("bench_mining.py", "--sizes", "1200", "--dims", "16", "--sources", "exact", "faiss",
                     "fanng", "--repeats", "2")
    for source in ("exact", "faiss", "fanng"):
        line = re.search(rf"^{source} (\d+\.\d+)s ({RATIO}) faiss recall@30=(\d\.\d+)", out, re.M)
        assert line, f"no timing line for {source}:\n{out}"
        assert 0.5 < float(line.group(3)) <= 1.0
    assert re.search(r"^exact .* recall@30=1\.0000", out, re.M)  # exact is the recall reference
    assert re.search(r"build=\d+\.\ds search=\d+\.\ds traverse_adds=\d+N success=0\.98", out)
    assert re.search(r"triplet selection \(Alg\. 1, \d+ triplets, kappa=1\): \d+\.\d+s", out)


def test_bench_fanng_build_prints_each_round_and_the_median_ratio():
    pytest.importorskip("faiss")
    out = run_script("bench_fanng_build.py", "--n", "1500", "--dim", "16", "--variants", "default",
                     "sequential", "--repeats", "2", "--budgets", "100")
    assert len(re.findall(r"faiss exact( again)? \d+\.\d+s wall", out)) == 3  # one before, one per round
    for variant in ("default", "sequential"):
        rounds = re.findall(rf"^{variant} total / faiss: (\d+\.\d+)x wall", out, re.M)
        assert len(rounds) == 2, out
        summary = re.search(rf"^{variant} total / faiss over 2 rounds: median (\d+\.\d+)x, "
                            rf"range (\d+\.\d+)-(\d+\.\d+)x", out, re.M)
        assert summary, out
        median, low, high = map(float, summary.groups())
        assert low <= median <= high and low == min(map(float, rounds)) and high == max(map(float, rounds))
    recall = re.search(r"budget 100: search .* recall@30=(\d\.\d+)", out)
    assert recall and 0.0 < float(recall.group(1)) <= 1.0, out


def test_bench_evaluation_times_retrieval_and_clustering_against_faiss():
    pytest.importorskip("faiss")
    out = run_script("bench_evaluation.py", "--num_items", "600", "--dim", "16", "--recall_ks", "1,10",
                     "--methods", "numpy,faiss_ip,keras", "--kmeans", "sklearn")
    for method in ("numpy", "keras"):  # the library's retrieval metrics, with their values
        line = re.search(rf"^retrieval/{method} \d+\.\d+ s peak extra \d+\.\d+ GiB .*recall@1 (\d\.\d+)", out, re.M)
        assert line and 0.0 <= float(line.group(1)) <= 1.0, out
    assert re.search(r"^nmi_f1/sklearn \d+\.\d+ s .* nmi 0\.\d+ f1 0\.\d+", out, re.M), out
    ratios = dict(re.findall(r"^(\S+) (\d+\.\d+)×$", out, re.M))
    assert set(ratios) == {"retrieval/numpy", "retrieval/faiss_ip", "retrieval/keras", "nmi_f1/sklearn"}
    assert float(ratios["retrieval/faiss_ip"]) == 1.0  # the reference against itself


def test_bench_losses_prints_loss_and_step_ratios():
    out = run_script("bench_losses.py", "--families", "npair,triplet", "--classes", "4", "--dim", "8",
                     "--rounds", "2", "--inner", "1", "--step_inner", "1", "--input_dim", "16",
                     "--extractor_width", "16", "--extractor_layers", "1")
    for family in ("npair", "triplet"):
        assert re.search(rf"^{family}( \d+\.\d+){{6}}$", out, re.M), out


def test_bench_damlrrm_prints_each_round_and_the_median_ratio():
    out = run_script("bench_damlrrm.py", "--stream_size", "8", "--images_per_class", "2", "--embedding_dim", "8",
                     "--feature_dim", "16", "--steps", "2", "--rounds", "2", "--warmup", "1")
    assert len(re.findall(r"^[01]( \d+\.\d+){6}$", out, re.M)) == 2, out
    assert re.search(r"^median( \d+\.\d+){6} damlrrm/npair", out, re.M), out


def test_bench_loss_parts_prints_each_loss_with_its_logged_parts():
    out = run_script("bench_loss_parts.py", "--batch", "8", "--features", "16", "--dim", "8", "--steps", "2",
                     "--epochs", "2", "--losses", "npair,symm_triplet")
    assert re.search(r"^npair npair_softmax,npair_l2( \d+\.\d+){3}$", out, re.M), out
    assert re.search(r"^symm_triplet symm_triplet_active_share( \d+\.\d+){3}$", out, re.M), out


@pytest.mark.slow
def test_bench_pipeline_reports_images_per_cpu_second_against_the_goal():
    out = run_script("bench_pipeline.py", "--images", "200", "--batches", "2")
    assert re.search(r"^pre256 2( \d+\.\d+)+", out, re.M), out
    assert re.search(r"goal: >= 150 img per CPU-second \(files, 1 core\): (met|not met) \(\d+\.\d\)", out), out


@pytest.mark.slow
def test_bench_train_step_prints_rounds_and_the_median_full_to_backbone_ratio():
    out = run_script("bench_train_step.py", "--batch_size", "4", "--input_size", "96", "--embedding_dim", "8",
                     "--steps", "1", "--rounds", "2", "--warmup", "1", "--jit_compile", "false")
    assert len(re.findall(r"^[01]( \d+\.\d+){3}$", out, re.M)) == 2, out
    assert re.search(r"^median( \d+\.\d+){3} \(goal >= 0\.97\)", out, re.M), out


@pytest.mark.slow
def test_bench_mining_share_prints_each_part_and_the_shares():
    out = run_script("bench_mining_share.py", "--sizes", "120", "--input_size", "96", "--embed_batch_size", "32",
                     "--triplets_per_batch", "4")
    assert re.search(r"train \d+\.\d+s .* embed \d+\.\d+s .* neighbours \d+\.\d+s .* selection \d+\.\d+s",
                     out), out
    assert re.search(r"\(neighbours \+ selection\) / epoch = \d+\.\d+ %", out), out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or not os.path.isdir(os.path.join(REPO, ".git")),
                    reason="bench_fanng_paired.py reads its baseline from the git history")
def test_bench_fanng_paired_against_the_checked_out_revision():
    out = run_script("bench_fanng_paired.py", "--baseline", "HEAD", "--n", "16384", "--dim", "16")
    assert re.search(r"greedy searches: current \d+\.\d+ s, baseline \(HEAD\) \d+\.\d+ s", out), out
    assert re.search(r"current / baseline: \d\.\d{3} of the totals; per batch median \d\.\d{3}", out), out


def test_bench_fanng_paired_refuses_sizes_it_cannot_pair():
    done = launch("bench_fanng_paired.py", "--baseline", "HEAD", "--n", "3000")
    assert done.returncode == 2
    assert "pairing needs --n >= 16384" in done.stderr


def test_gpu_issue20_tiny_smoke_run_prints_every_goal():
    # The one prepared GPU script of issue 20, at --tiny sizes on the CPU (JAX backend, as on the GPU
    # machine): every part runs and the summary names each goal; the figures themselves mean nothing here.
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-u", os.path.join(REPO, "benchmarks", "gpu_issue20.py"), "--tiny"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"gpu_issue20.py --tiny failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = words(done.stdout)
    assert re.search(r"^retrieval_metrics first call \d+\.\d+ s; a warm call: \d+ host copies, \d+ XLA", out, re.M), out
    for precision in ("float32", "bfloat16", "tensorfloat32"):
        line = re.search(rf"^exact_knn k=10 {precision} .* lists equal to float32 (\d\.\d+)", out, re.M)
        assert line and float(line.group(1)) > 0.99, out  # the re-rank returns the float32 lists
    assert re.search(r"^retrieval_metrics block_size 256: \d+\.\d+ s$", out, re.M), out
    assert len(re.findall(r"^top_k of a 600 x 600 block, k=5, .*: \d+\.\d+ ms$", out, re.M)) == 2, out
    assert re.search(r"^\(neighbours \+ Algorithm 1\) / epoch = \d+\.\d+ %", out, re.M), out
    for name in ("retrieval \\+ MAP@R seconds", "k-means \\+ NMI seconds", "mining share of an epoch %",
                 "full / backbone-only step"):
        assert re.search(rf"^goal {name}: \d+\.\d+ \(goal [<>]= [\d.]+.*\) (met|NOT met)$", out, re.M), out
    assert re.search(r"^goal retrieval / torch bare kNN: (\d+\.\d+|not measured)", out, re.M), out
