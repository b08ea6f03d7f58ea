"""Write a CUB-200-2011 tree in the official format from generated JPEGs (no download needed).

    python benchmarks/make_fake_cub.py /tmp/cubfake --images_per_class 6 --size 256

All 200 classes (1–100 train, 101–200 test, the standard split), each image a
real JPEG of one class colour plus noise (``tests/data/fixtures.write_image``),
so ``experiments/train.py --dataset cub --data_root DIR/CUB_200_2011`` runs the
whole pipeline (JPEG decode, P×K batches, evaluation) on machines without the
dataset — the GPU check in docs/gpu.md. Retrieval on these images is trivial.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.data.fixtures import write_image  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the tree goes to BASE/CUB_200_2011")
    parser.add_argument("--images_per_class", type=int, default=6)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    args = parser.parse_args()
    root = os.path.join(args.base, "CUB_200_2011")
    rows = []
    for c in range(1, 201):
        for n in range(args.images_per_class):
            i = len(rows) + 1
            rel = f"{c:03d}.Species_{c}/Species_{c}_{n:04d}_{i}.jpg"
            write_image(os.path.join(root, "images", rel), c, size=(args.size, args.size), seed=i)
            rows.append((i, rel, c))
    files = {
        "images.txt": (f"{i} {rel}\n" for i, rel, _ in rows),
        "image_class_labels.txt": (f"{i} {c}\n" for i, _, c in rows),
        "classes.txt": (f"{c} {c:03d}.Species_{c}\n" for c in range(1, 201)),
        "bounding_boxes.txt": (f"{i} 0.0 0.0 {args.size}.0 {args.size}.0\n" for i, _, _ in rows),
        "train_test_split.txt": (f"{i} {n % 2}\n" for n, (i, _, _) in enumerate(rows)),
    }
    for name, lines in files.items():
        with open(os.path.join(root, name), "w") as f:
            f.writelines(lines)
    print(f"wrote {len(rows)} images under {root}")


if __name__ == "__main__":
    main()
