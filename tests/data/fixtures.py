"""Tiny datasets in the exact official on-disk formats, for offline tests.

* CUB-200-2011: ``CUB_200_2011/{images.txt, image_class_labels.txt,
  classes.txt, bounding_boxes.txt, train_test_split.txt}`` + ``images/<class>/<file>.jpg``.
* Cars196: ``cars_annos.mat`` written with ``scipy.io.savemat`` (1×N struct
  ``annotations`` with ``relative_im_path, bbox_x1, bbox_y1, bbox_x2, bbox_y2,
  class, test``; 1×C cell ``class_names``) + ``car_ims/000001.jpg``.
* SOP: ``Stanford_Online_Products/{Ebay_train.txt, Ebay_test.txt, Ebay_info.txt}``
  (header ``image_id class_id super_class_id path``) + ``<super>_final/<id>_<n>.JPG``.

Every image is a real JPEG whose pixels are ``class_colour(label)`` plus a
little noise, so a test can tell from the pixels which class an image is.
Optional defects: a truncated JPEG (``corrupt``), a greyscale JPEG (``grey``,
mode "L"), a PNG saved with a ``.jpg`` name (``png``), a listed file that
is not on disk (``missing``), and a JPEG whose compressed data is random
bytes with its markers intact (``scrambled``: only a full decode sees it).

Metadata that lies: :func:`edit_lines` rewrites lines of a txt file,
:func:`edit_cars_annotations` rewrites ``cars_annos.mat`` in place.
"""

import dataclasses
import os

import numpy as np
from PIL import Image

CUB_TRAIN_CLASSES = (1, 2, 3, 4, 5)
CUB_TEST_CLASSES = (101, 102, 103, 104)
CARS_TRAIN_CLASSES = (1, 2, 3, 4)
CARS_TEST_CLASSES = (99, 100, 101)
SOP_TRAIN_CLASSES = (1, 2, 3, 4, 5, 6)
SOP_TEST_CLASSES = (11319, 11320, 11321, 11322)
SOP_SUPER_CLASSES = ("bicycle", "cabinet", "chair")


@dataclasses.dataclass
class FakeDataset:
    root: str  # what to pass as ``root`` to the readers
    labels: dict  # relative path -> class id of every listed image
    corrupt: list = dataclasses.field(default_factory=list)
    grey: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    scrambled: list = dataclasses.field(default_factory=list)
    sizes: dict = dataclasses.field(default_factory=dict)  # relative path -> (height, width)


def class_colour(label):
    """A distinct RGB colour per class id (channels differ, so BGR swaps show)."""
    rng = np.random.default_rng(int(label))
    return rng.integers(30, 226, size=3)


def write_image(path, label, size=(48, 64), grey=False, fmt="JPEG", seed=0):
    """Write a real image of ``size = (height, width)`` coloured by ``label``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = class_colour(label)[None, None, :] + rng.integers(-8, 9, size=(*size, 3))
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if grey:
        image = image.convert("L")
    image.save(path, format=fmt, quality=92)


def truncate(path, keep=0.4):
    """Cut a file to ``keep`` of its bytes (a truncated download)."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: max(16, int(len(data) * keep))])


def scramble(path, seed=0):
    """Replace a JPEG's entropy-coded data with random bytes, keeping the SOI/SOS/EOI markers.

    The file still starts with ``FF D8`` and ends with ``FF D9``, so a byte
    sniff (``--check quick``) passes it; decoding fails (``jpeg::Uncompress failed``).
    """
    with open(path, "rb") as f:
        data = bytearray(f.read())
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    data[start:-2] = np.random.default_rng(seed).integers(0, 256, len(data) - 2 - start, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(bytes(data))


def edit_lines(path, edit):
    """Rewrite a text file: ``edit(lines)`` gets and returns the list of lines (without newlines)."""
    with open(path) as f:
        lines = f.read().splitlines()
    with open(path, "w") as f:
        f.writelines(f"{line}\n" for line in edit(lines))


def edit_cars_annotations(base, edit):
    """Rewrite ``base/cars_annos.mat``: ``edit(records)`` gets and returns a list of per-image dicts.

    Each dict holds the annotation fields as Python values (``relative_im_path``
    str, boxes and ``class`` numbers, ``test``); a value may be replaced by any
    object ``scipy.io.savemat`` writes (a float, a string, an empty array).
    """
    from scipy import io as scipy_io

    filename = os.path.join(base, "cars_annos.mat")
    mat = scipy_io.loadmat(filename)
    fields = mat["annotations"].dtype.names
    records = [
        {name: a[name].reshape(-1)[0] if a[name].size == 1 else a[name] for name in fields}
        for a in mat["annotations"].reshape(-1)
    ]
    records = edit(records)
    annotations = np.zeros((1, len(records)), dtype=[(name, "O") for name in fields])
    for i, record in enumerate(records):
        for name in fields:
            value = record[name]
            annotations[0, i][name] = np.array([value]) if isinstance(value, str) else np.array([[value]])
    scipy_io.savemat(filename, {"annotations": annotations, "class_names": mat["class_names"]})


def _sizes(rng, n):
    return [(int(rng.integers(40, 90)), int(rng.integers(40, 90))) for _ in range(n)]


def _apply_defects(root, fake, rel_paths, label_of, corrupt, grey, png, missing, scrambled=False):
    """Turn chosen images into defects; ``rel_paths`` are relative to ``root``."""
    if scrambled:
        p = rel_paths[4]
        scramble(os.path.join(root, p))
        fake.scrambled.append(p)
    if corrupt:
        p = rel_paths[1]
        truncate(os.path.join(root, p))
        fake.corrupt.append(p)
    if grey:
        p = rel_paths[2]
        write_image(os.path.join(root, p), label_of[p], size=fake.sizes[p], grey=True)
        fake.grey.append(p)
    if png:
        p = rel_paths[3]
        write_image(os.path.join(root, p), label_of[p], size=fake.sizes[p], fmt="PNG")
    if missing:
        p = rel_paths[-1]
        os.remove(os.path.join(root, p))
        fake.missing.append(p)


def make_cub(base, images_per_class=4, corrupt=False, grey=False, png=False, missing=False, seed=0, scrambled=False):
    """A CUB-200-2011 tree under ``base/CUB_200_2011``; returns :class:`FakeDataset`."""
    rng = np.random.default_rng(seed)
    root = os.path.join(base, "CUB_200_2011")
    image_dir = os.path.join(root, "images")
    classes = CUB_TRAIN_CLASSES + CUB_TEST_CLASSES
    fake = FakeDataset(root=root, labels={})
    rows, rel_paths = [], []
    image_id = 0
    for c in classes:
        folder = f"{c:03d}.Bird_Species_{c}"
        for n, size in enumerate(_sizes(rng, images_per_class)):
            image_id += 1
            rel = f"{folder}/Bird_Species_{c}_{n:04d}_{image_id}.jpg"
            write_image(os.path.join(image_dir, rel), c, size=size, seed=image_id)
            h, w = size
            box = (round(w * 0.1, 1), round(h * 0.2, 1), round(w * 0.6, 1), round(h * 0.5, 1))
            rows.append((image_id, rel, c, box, int(rng.integers(0, 2))))
            fake.labels[rel] = c
            fake.sizes[rel] = size
            rel_paths.append(rel)
    with open(os.path.join(root, "images.txt"), "w") as f:
        f.writelines(f"{i} {rel}\n" for i, rel, *_ in rows)
    with open(os.path.join(root, "image_class_labels.txt"), "w") as f:
        f.writelines(f"{i} {c}\n" for i, _, c, *_ in rows)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.writelines(f"{c} {c:03d}.Bird_Species_{c}\n" for c in classes)
    with open(os.path.join(root, "bounding_boxes.txt"), "w") as f:
        f.writelines(f"{i} {b[0]} {b[1]} {b[2]} {b[3]}\n" for i, _, _, b, _ in rows)
    with open(os.path.join(root, "train_test_split.txt"), "w") as f:
        f.writelines(f"{i} {t}\n" for i, *_, t in rows)
    with open(os.path.join(root, "README"), "w") as f:
        f.write("Caltech-UCSD Birds-200-2011 (test fixture written by tests/data/fixtures.py)\n")
    _apply_defects(image_dir, fake, rel_paths, fake.labels, corrupt, grey, png, missing, scrambled)
    return fake


def make_cars196(
    base, images_per_class=4, corrupt=False, grey=False, png=False, missing=False, seed=0, scrambled=False
):
    """A Cars196 tree (``cars_annos.mat`` + ``car_ims/``) directly under ``base``."""
    from scipy import io as scipy_io

    rng = np.random.default_rng(seed)
    classes = CARS_TRAIN_CLASSES + CARS_TEST_CLASSES
    fake = FakeDataset(root=base, labels={})
    records, rel_paths = [], []
    image_id = 0
    for c in classes:
        for size in _sizes(rng, images_per_class):
            image_id += 1
            rel = f"car_ims/{image_id:06d}.jpg"
            write_image(os.path.join(base, rel), c, size=size, seed=image_id)
            h, w = size
            box = (int(w * 0.1) + 1, int(h * 0.1) + 1, int(w * 0.8), int(h * 0.9))
            records.append((rel, *box, c, int(rng.integers(0, 2))))
            fake.labels[rel] = c
            fake.sizes[rel] = size
            rel_paths.append(rel)
    fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
    annotations = np.zeros((1, len(records)), dtype=[(name, "O") for name in fields])
    for i, record in enumerate(records):
        annotations[0, i]["relative_im_path"] = np.array([record[0]])
        for name, value in zip(fields[1:5], record[1:5]):
            annotations[0, i][name] = np.array([[value]], dtype=np.uint16)
        annotations[0, i]["class"] = np.array([[record[5]]], dtype=np.uint8)
        annotations[0, i]["test"] = np.array([[record[6]]], dtype=np.uint8)
    names = np.empty((1, max(classes)), dtype=object)
    for c in range(1, max(classes) + 1):
        names[0, c - 1] = f"Car Make Model {c} 2012"
    scipy_io.savemat(os.path.join(base, "cars_annos.mat"), {"annotations": annotations, "class_names": names})
    _apply_defects(base, fake, rel_paths, fake.labels, corrupt, grey, png, missing, scrambled)
    return fake


def make_sop(base, corrupt=False, grey=False, png=False, missing=False, seed=0, scrambled=False):
    """An SOP tree under ``base/Stanford_Online_Products`` (2–5 images per class)."""
    rng = np.random.default_rng(seed)
    root = os.path.join(base, "Stanford_Online_Products")
    fake = FakeDataset(root=root, labels={})
    tables = {"train": [], "test": []}
    rel_paths = []
    image_id = 0
    for part, classes in (("train", SOP_TRAIN_CLASSES), ("test", SOP_TEST_CLASSES)):
        for c in classes:
            super_id = 1 + c % len(SOP_SUPER_CLASSES)
            product = 111085122000 + c
            for n, size in enumerate(_sizes(rng, int(rng.integers(2, 6)))):
                image_id += 1
                rel = f"{SOP_SUPER_CLASSES[super_id - 1]}_final/{product}_{n}.JPG"
                write_image(os.path.join(root, rel), c, size=size, seed=image_id)
                tables[part].append((image_id, c, super_id, rel))
                fake.labels[rel] = c
                fake.sizes[rel] = size
                rel_paths.append(rel)
    for part, name in (("train", "Ebay_train.txt"), ("test", "Ebay_test.txt")):
        with open(os.path.join(root, name), "w") as f:
            f.write("image_id class_id super_class_id path\n")
            f.writelines(f"{i} {c} {s} {p}\n" for i, c, s, p in tables[part])
    with open(os.path.join(root, "Ebay_info.txt"), "w") as f:
        f.write("image_id class_id super_class_id path\n")
        f.writelines(f"{i} {c} {s} {p}\n" for part in ("train", "test") for i, c, s, p in tables[part])
    _apply_defects(root, fake, rel_paths, fake.labels, corrupt, grey, png, missing, scrambled)
    return fake


MAKERS = {"cub": make_cub, "cars196": make_cars196, "sop": make_sop}
