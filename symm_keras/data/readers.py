"""Readers for the official layouts of CUB-200-2011, Cars196 and SOP.

Each reader parses the dataset's own metadata files and returns a
:class:`SplitIndex` with the standard DML class split (design.md):

* CUB-200-2011 (``CUB_200_2011/``): ``images.txt`` (``id path``),
  ``image_class_labels.txt`` (``id class``), ``classes.txt`` (``class name``),
  ``bounding_boxes.txt`` (``id x y width height``), images under ``images/``.
  ``train_test_split.txt`` is the per-image classification split and is not
  used: classes 1–100 train, 101–200 test.
* Cars196: ``cars_annos.mat`` (struct ``annotations`` with
  ``relative_im_path``, ``bbox_x1``, ``bbox_y1``, ``bbox_x2``, ``bbox_y2``,
  ``class``, ``test``; cell ``class_names``) read with ``scipy.io.loadmat``,
  images under ``car_ims/``. Classes 1–98 train, 99–196 test.
* Stanford Online Products (``Stanford_Online_Products/``): ``Ebay_train.txt``
  and ``Ebay_test.txt``, a header line then ``image_id class_id
  super_class_id path``. The file decides the split.
"""

import os

import numpy as np

from symm_keras.data.split_index import (
    TEST,
    TRAIN,
    SplitIndex,
    check_dataset_name,
    split_by_class_range,
)

#: File names that identify each dataset's root directory.
MARKER_FILES = {"cub": "images.txt", "cars196": "cars_annos.mat", "sop": "Ebay_train.txt"}
#: Sub-folder the official archive extracts to (searched below ``root``).
ARCHIVE_FOLDERS = {"cub": "CUB_200_2011", "cars196": "", "sop": "Stanford_Online_Products"}
#: File name of the index written by ``python -m data_prep.prepare``.
INDEX_FILENAME = "split_index.csv"


def find_dataset_root(dataset, root):
    """The folder holding the dataset's metadata: ``root`` itself or its archive sub-folder."""
    check_dataset_name(dataset)
    marker = MARKER_FILES[dataset]
    for candidate in (root, os.path.join(root, ARCHIVE_FOLDERS[dataset])):
        if os.path.isfile(os.path.join(candidate, marker)):
            return os.path.abspath(candidate)
    raise FileNotFoundError(
        f"{dataset}: {marker} not found in {root!r} or {os.path.join(root, ARCHIVE_FOLDERS[dataset])!r}. "
        f"Run `python -m data_prep.download --dataset {dataset} --root {root}` or place the official files there."
    )


def _read_table(filename, columns, skip_header=False):
    """Whitespace-separated rows with at least ``columns`` fields, as lists of str."""
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"metadata file {filename} is missing.")
    rows = []
    with open(filename, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if skip_header and number == 1:
                continue
            fields = line.split()
            if not fields:
                continue
            if len(fields) < columns:
                raise ValueError(f"{filename}, line {number}: expected {columns} fields, got {line.strip()!r}.")
            rows.append(fields[:columns] if columns > 1 else fields)
    return rows


def read_cub(root):
    """Parse CUB-200-2011's txt files into a :class:`SplitIndex` (classes 1–100 train)."""
    root = find_dataset_root("cub", root)
    images = {int(i): p for i, p in _read_table(os.path.join(root, "images.txt"), 2)}
    labels = {int(i): int(c) for i, c in _read_table(os.path.join(root, "image_class_labels.txt"), 2)}
    names = {}
    with open(os.path.join(root, "classes.txt"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                cid, name = line.strip().split(maxsplit=1)
                names[int(cid)] = name
    if set(images) != set(labels):
        diff = sorted(set(images) ^ set(labels))[:10]
        raise ValueError(f"{root}: images.txt and image_class_labels.txt list different image ids, e.g. {diff}.")
    ids = sorted(images)
    bboxes = None
    box_file = os.path.join(root, "bounding_boxes.txt")
    if os.path.isfile(box_file):
        boxes = {int(r[0]): [float(v) for v in r[1:]] for r in _read_table(box_file, 5)}
        if set(boxes) >= set(ids):
            bboxes = np.array([boxes[i] for i in ids], dtype=np.float32)
    label_array = np.array([labels[i] for i in ids], dtype=np.int64)
    return SplitIndex(
        dataset="cub",
        root=os.path.join(root, "images"),
        paths=np.array([images[i] for i in ids], dtype=str),
        labels=label_array,
        split=split_by_class_range(label_array, "cub"),
        class_names=names,
        bboxes=bboxes,
    )


def _mat_scalar(value):
    """Unwrap the nested 1×1 arrays scipy.io.loadmat produces for struct fields."""
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected a scalar MATLAB value, got an array of shape {value.shape}.")
        value = value.reshape(-1)[0]
    return value


def read_cars196(root):
    """Parse Cars196's ``cars_annos.mat`` into a :class:`SplitIndex` (classes 1–98 train)."""
    from scipy import io as scipy_io

    root = find_dataset_root("cars196", root)
    mat_file = os.path.join(root, "cars_annos.mat")
    try:
        mat = scipy_io.loadmat(mat_file)
    except Exception as error:  # scipy raises several types for a damaged file
        raise ValueError(f"cannot read {mat_file}: {error}") from error
    if "annotations" not in mat:
        raise ValueError(f"{mat_file} has no 'annotations' struct (keys: {sorted(k for k in mat if not k.startswith('__'))}).")
    annotations = mat["annotations"].reshape(-1)
    required = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class")
    fields = annotations.dtype.names or ()
    missing = [f for f in required if f not in fields]
    if missing:
        raise ValueError(f"{mat_file}: annotations lack fields {missing}.")
    paths, labels, boxes = [], [], []
    for a in annotations:
        paths.append(str(_mat_scalar(a["relative_im_path"])))
        labels.append(int(_mat_scalar(a["class"])))
        x1, y1, x2, y2 = (float(_mat_scalar(a[k])) for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"))
        # MATLAB boxes are 1-based and inclusive; store 0-based (x, y, width, height).
        boxes.append((x1 - 1.0, y1 - 1.0, x2 - x1 + 1.0, y2 - y1 + 1.0))
    names = {}
    if "class_names" in mat:
        for i, name in enumerate(mat["class_names"].reshape(-1), start=1):
            names[i] = str(_mat_scalar(name))
    label_array = np.array(labels, dtype=np.int64)
    return SplitIndex(
        dataset="cars196",
        root=root,
        paths=np.array(paths, dtype=str),
        labels=label_array,
        split=split_by_class_range(label_array, "cars196"),
        class_names=names,
        bboxes=np.array(boxes, dtype=np.float32),
    )


def read_sop(root):
    """Parse SOP's ``Ebay_train.txt``/``Ebay_test.txt`` into a :class:`SplitIndex`."""
    root = find_dataset_root("sop", root)
    paths, labels, supers, split = [], [], [], []
    for name, part in (("Ebay_train.txt", TRAIN), ("Ebay_test.txt", TEST)):
        filename = os.path.join(root, name)
        if not os.path.isfile(filename):
            raise FileNotFoundError(f"metadata file {filename} is missing.")
        with open(filename, encoding="utf-8") as f:
            header = f.readline().split()
            if header[:4] != ["image_id", "class_id", "super_class_id", "path"]:
                raise ValueError(f"{filename}: expected header 'image_id class_id super_class_id path', got {header}.")
        for _, cid, sid, path in _read_table(filename, 4, skip_header=True):
            paths.append(path)
            labels.append(int(cid))
            supers.append(int(sid))
            split.append(part)
    label_array = np.array(labels, dtype=np.int64)
    split_array = np.array(split, dtype=str)
    overlap = np.intersect1d(label_array[split_array == TRAIN], label_array[split_array == TEST])
    if overlap.size:
        raise ValueError(f"{root}: classes {overlap[:10].tolist()} appear in both Ebay_train.txt and Ebay_test.txt.")
    return SplitIndex(
        dataset="sop",
        root=root,
        paths=np.array(paths, dtype=str),
        labels=label_array,
        split=split_array,
        super_labels=np.array(supers, dtype=np.int64),
    )


READERS = {"cub": read_cub, "cars196": read_cars196, "sop": read_sop}


def load_split_index(dataset, root, check_files=True):
    """The :class:`SplitIndex` of ``dataset`` under ``root``.

    Reads ``root/split_index.csv`` when ``python -m data_prep.prepare`` wrote one
    (it lists only images that exist and decode), otherwise parses the official
    metadata files.

    Args:
        dataset: ``"cub"``, ``"cars196"`` or ``"sop"``.
        root: the dataset folder (or its parent holding the extracted archive).
        check_files: raise :class:`MissingFilesError` listing every missing image.
    """
    check_dataset_name(dataset)
    prepared = os.path.join(root, INDEX_FILENAME)
    if os.path.isfile(prepared):
        index = SplitIndex.load_csv(prepared)
        if index.dataset != dataset:
            raise ValueError(f"{prepared} indexes dataset {index.dataset!r}, not {dataset!r}.")
    else:
        index = READERS[dataset](root)
    return index.check_files() if check_files else index
