"""Train-pipeline throughput: images/s per CPU core, and cores needed for 4,000 img/s.

    .venv/bin/python benchmarks/bench_pipeline.py [--images 600] [--batches 12] [--cub_sample DIR]

Measures the full P×K training pipeline of ``symm_keras.data`` (file read or
in-memory bytes → JPEG decode → resize 256×256 → random 227 crop → flip →
Caffe normalisation → batch 64×2 = 128) on generated real-size JPEGs
(500×375, textured so that they compress like photographs, ~CUB file size).
Each configuration runs in a child process pinned to N cores
(``os.sched_setaffinity``) so "per core" means one core, not one thread.

Configurations, side by side in one run:

* ``files``      — JPEG files as released (500×375);
* ``memory``     — the same bytes held in memory (``encoded_images=``);
* ``pre256``     — re-encoded at 256×256 (``prepare --tfrecord_resize 256``);
* ``cub_sample`` — the real CUB JPEGs of ../shared/data/cub_sample, which are
  downscaled to ≤ 256 px (so faster than real-size images), when present.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TARGET_IMAGES_PER_SECOND = 4000  # an H100 GoogLeNet train step (docs/architecture.md, Performance conventions)


def _photo_like(rng, height=375, width=500):
    """Smooth colour fields + edges + fine noise: compresses like a photograph."""
    from PIL import Image, ImageFilter

    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), np.float32)
    y, x = np.mgrid[0:height, 0:width]
    stripes = 40 * np.sin(x / rng.uniform(3, 9) + y / rng.uniform(5, 15))[..., None]
    noise = rng.normal(0, 18, size=(height, width, 3))
    image = np.clip(base + stripes + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(image).filter(ImageFilter.SMOOTH)


def make_dataset(directory, num_images, classes=100, seed=0):
    """Write ``num_images`` 500×375 JPEGs in the CUB layout; return the SplitIndex (all train)."""
    from symm_keras.data.split_index import SplitIndex

    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for i in range(num_images):
        label = 1 + i % classes
        rel = f"{label:03d}/{i:05d}.jpg"
        os.makedirs(os.path.join(directory, f"{label:03d}"), exist_ok=True)
        _photo_like(rng).save(os.path.join(directory, rel), quality=90)
        paths.append(rel)
        labels.append(label)
    return SplitIndex(
        dataset="cub",
        root=directory,
        paths=np.array(paths),
        labels=np.array(labels, np.int64),
        split=np.array(["train"] * num_images),
    )


def _reencoded(index, side):
    import tensorflow as tf

    out = np.empty(len(index), dtype=object)
    for i, path in enumerate(index.full_paths()):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, (side, side), antialias=True)
        out[i] = tf.io.encode_jpeg(tf.cast(tf.round(image), tf.uint8), quality=95).numpy()
    return out


def run_child(config, cores, directory, batches, cub_sample):
    """Measure one configuration inside this (pinned) process; return a result dict."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from symm_keras import data
    from symm_keras.data.split_index import SplitIndex

    if config == "cub_sample":
        index = data.load_split_index("cub", cub_sample, check_files=False).restrict_classes(range(1, 11))
        classes_per_batch, images_per_class = 10, 2
    else:
        index = SplitIndex.load_csv(os.path.join(directory, "split_index.csv"))
        classes_per_batch, images_per_class = 64, 2
    encoded = None
    if config == "memory":
        encoded = np.array([open(p, "rb").read() for p in index.full_paths()], dtype=object)
    elif config == "pre256":
        encoded = _reencoded(index, 256)
    mean_bytes = (
        float(np.mean([len(e) for e in encoded]))
        if encoded is not None
        else float(np.mean([os.path.getsize(p) for p in index.full_paths()]))
    )
    prep = data.ImagePreprocessing(crop_size=227, resize=256, mode="caffe")
    ds = data.pk_batches(
        index, classes_per_batch, images_per_class, prep, seed=0, validate="none", encoded_images=encoded,
        num_parallel_calls=cores,
    )
    iterator = iter(ds)
    for _ in range(2):  # warm-up: tracing, thread pools, file cache
        next(iterator)
    start, cpu_start = time.perf_counter(), time.process_time()
    images = 0
    for _ in range(batches):
        images += int(next(iterator)[0].shape[0])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"config": config, "cores": cores, "images": images, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "images_per_second": images / seconds, "images_per_cpu_second": images / cpu_seconds,
            "mean_file_kb": mean_bytes / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--cub_sample", default=os.path.join(REPO, "..", "shared", "data", "cub_sample"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cores", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--directory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.cores, args.directory, args.batches, args.cub_sample)))
        return
    sys.path.insert(0, REPO)
    all_cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as directory:
        t = time.perf_counter()
        index = make_dataset(directory, args.images)
        index.save_csv(os.path.join(directory, "split_index.csv"))
        print(f"generated {args.images} JPEGs of 500x375 in {time.perf_counter() - t:.1f} s; "
              f"{all_cores} cores available to this process")
        configs = ["files", "memory", "pre256"]
        if os.path.isfile(os.path.join(args.cub_sample, "images.txt")):
            configs.append("cub_sample")
        results = []
        for config in configs:
            for cores in sorted({1, all_cores}):
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--child", config, "--cores", str(cores),
                     "--directory", directory, "--batches", str(args.batches), "--cub_sample", args.cub_sample],
                    capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                )
                if out.returncode != 0:
                    raise RuntimeError(f"{config} on {cores} cores failed:\n{out.stderr[-3000:]}")
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    # img per CPU-second (user + sys of all the process's threads) is the per-core rate even when
    # other jobs share the cores; wall img/s / cores is only equal to it on an idle machine.
    per_core = {r["config"]: r["images_per_cpu_second"] for r in results if r["cores"] == 1}
    print(f"\n{'config':<11} {'cores':>5} {'file KB':>8} {'wall img/s':>10} {'img/CPU-s':>10} "
          f"{'CPU busy':>8} {'cores for 4000 img/s':>21} {'vs files':>9}")
    for r in results:
        rate = r["images_per_cpu_second"]
        busy = r["cpu_seconds"] / (r["seconds"] * r["cores"])
        print(f"{r['config']:<11} {r['cores']:>5} {r['mean_file_kb']:>8.1f} {r['images_per_second']:>10.1f} "
              f"{rate:>10.1f} {busy:>8.0%} {TARGET_IMAGES_PER_SECOND / rate:>21.1f} "
              f"{rate / per_core['files']:>9.2f}")
    print("\nCPU busy < 100%: the cores were shared with other jobs (wall figures understate the rate).")
    print("goal: >= 150 img per CPU-second (files, 1 core): "
          + ("met" if per_core["files"] >= 150 else "NOT met") + f" ({per_core['files']:.1f})")


if __name__ == "__main__":
    main()
