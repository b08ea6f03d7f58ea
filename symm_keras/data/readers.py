"""Readers for the official layouts of CUB-200-2011, Cars196 and SOP.

Each reader parses the dataset's own metadata files and returns a
:class:`SplitIndex` with the standard DML class split (docs/data.md):

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

Metadata is never trusted: each reader checks ids (positive integers, each
listed once), labels (within the dataset's class ids and its class list),
cross-references between files, and split consistency (no path listed twice,
so no image sits in both splits; every class in one split), and raises
:class:`MetadataError` listing every ``file:line`` at fault, before anything
is used. None of the three releases publishes errata that would let a known
bad line be skipped, so every fault stops the read.
"""

import os

import numpy as np

from symm_keras.data.split_index import (
    STANDARD_SPLITS,
    TEST,
    TRAIN,
    MetadataError,
    SplitIndex,
    check_dataset_name,
    index_problems,
    parse_positive_int,
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


def _read_rows(filename, columns, problems, skip_header=False):
    """``(line number, fields)`` of each non-empty line, split into ``columns`` fields (the last keeps spaces).

    A line with fewer fields is recorded in ``problems`` as ``file:line`` and skipped.
    """
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"metadata file {filename} is missing.")
    rows = []
    with open(filename, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if skip_header and number == 1:
                continue
            fields = line.strip().split(maxsplit=columns - 1)
            if not fields:
                continue
            if len(fields) < columns:
                problems.append(f"{filename}:{number}: expected {columns} fields, got {line.strip()!r}.")
                continue
            rows.append((number, fields))
    if not rows:
        problems.append(f"{filename}: no rows.")
    return rows


def _id_table(filename, columns, what, problems):
    """``id -> (line, other fields)`` of a CUB-style ``<id> ...`` file; bad and repeated ids are problems."""
    table = {}
    for number, fields in _read_rows(filename, columns, problems):
        where = f"{filename}:{number}"
        key = parse_positive_int(fields[0], what, where, problems)
        if key is None:
            continue
        if key in table:
            problems.append(f"{where}: {what} {key} is listed again (first at line {table[key][0]}).")
            continue
        table[key] = (number, fields[1:])
    return table


def _cub_boxes(filename, images, problems):
    """``bounding_boxes.txt`` as ``id -> (x, y, width, height)``, each row checked."""
    boxes = {}
    for image_id, (number, fields) in _id_table(filename, 5, "image id", problems).items():
        where = f"{filename}:{number}"
        if image_id not in images:
            problems.append(f"{where}: image {image_id} is not in images.txt.")
            continue
        try:
            box = [float(v) for v in " ".join(fields).split()]
        except ValueError:
            problems.append(f"{where}: box {' '.join(fields)!r} is not four numbers.")
            continue
        if len(box) != 4 or not all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
            problems.append(f"{where}: box {box} is not (x, y, width, height) with a positive width and height.")
            continue
        boxes[image_id] = box
    return boxes


def read_cub(root):
    """Parse CUB-200-2011's txt files into a :class:`SplitIndex` (classes 1–100 train).

    Raises :class:`MetadataError` listing every ``file:line`` that is wrong: an
    id that is not a positive integer, an id listed twice, an image without a
    class (or a class line without an image), a class absent from
    ``classes.txt``, an image whose folder is another class's, a path listed
    twice, a missing or bad bounding box.
    """
    root = find_dataset_root("cub", root)
    files = {name: os.path.join(root, name) for name in ("images.txt", "image_class_labels.txt", "classes.txt")}
    problems = []
    images = _id_table(files["images.txt"], 2, "image id", problems)
    labels = _id_table(files["image_class_labels.txt"], 2, "image id", problems)
    names = {cid: fields[0] for cid, (_, fields) in _id_table(files["classes.txt"], 2, "class id", problems).items()}
    class_of_folder = {name: cid for cid, name in names.items()}
    label_of = {}
    for image_id, (number, (text,)) in labels.items():
        where = f"{files['image_class_labels.txt']}:{number}"
        if image_id not in images:
            problems.append(f"{where}: image {image_id} is not in images.txt.")
            continue
        label = parse_positive_int(text, "class id", where, problems)
        if label is None:
            continue
        path = images[image_id][1][0]
        folder_class = class_of_folder.get(path.split("/")[0])
        if folder_class is not None and folder_class != label:
            problems.append(
                f"{where}: image {image_id} has class {label} but its file {path} is in the folder of class "
                f"{folder_class} ({names[folder_class]})."
            )
        label_of[image_id] = label
    for image_id, (number, _) in images.items():
        if image_id not in labels:
            problems.append(f"{files['images.txt']}:{number}: image {image_id} has no line in image_class_labels.txt.")
    ids = sorted(label_of)
    bboxes = None
    box_file = os.path.join(root, "bounding_boxes.txt")
    if os.path.isfile(box_file):
        boxes = _cub_boxes(box_file, images, problems)
        absent = [i for i in ids if i not in boxes]
        if absent:
            problems.append(f"{box_file}: no box for {len(absent)} images, e.g. image ids {absent[:10]}.")
        else:
            bboxes = np.array([boxes[i] for i in ids], dtype=np.float32)
    label_array = np.array([label_of[i] for i in ids], dtype=np.int64)
    index = SplitIndex(
        dataset="cub",
        root=os.path.join(root, "images"),
        paths=np.array([images[i][1][0] for i in ids], dtype=str),
        labels=label_array,
        split=split_by_class_range(label_array, "cub"),
        class_names=names,
        bboxes=bboxes,
    )
    problems += index_problems(
        index,
        [f"{files['images.txt']}:{images[i][0]}" for i in ids],
        class_list="classes.txt",
        label_origins=[f"{files['image_class_labels.txt']}:{labels[i][0]}" for i in ids],
    )
    if problems:
        raise MetadataError(root, problems)
    return index


def _mat_scalar(value):
    """Unwrap the nested 1×1 arrays scipy.io.loadmat produces for struct fields."""
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected a scalar MATLAB value, got an array of shape {value.shape}")
        value = value.reshape(-1)[0]
    return value


def _mat_number(value, integer):
    value = _mat_scalar(value)
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (str, bytes)) or not np.isfinite(float(value)):
        raise ValueError(f"expected a number, got {value!r}")
    if integer and float(value) != int(value):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value) if integer else float(value)


def read_cars196(root):
    """Parse Cars196's ``cars_annos.mat`` into a :class:`SplitIndex` (classes 1–98 train).

    Raises :class:`MetadataError` listing every bad annotation (``cars_annos.mat:
    annotation n``): a field that is not a scalar number, a class outside 1–196 or
    ``class_names``, an empty box, a path listed twice.
    """
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
    problems, paths, labels, boxes, origins = [], [], [], [], []
    for number, a in enumerate(annotations, start=1):
        where = f"{mat_file}:annotation {number}"
        try:
            path = str(_mat_scalar(a["relative_im_path"])).strip()
            label = _mat_number(a["class"], integer=True)
            x1, y1, x2, y2 = (_mat_number(a[k], integer=False) for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"))
        except (ValueError, TypeError) as error:
            problems.append(f"{where}: {error}.")
            continue
        if not path:
            problems.append(f"{where}: empty relative_im_path.")
            continue
        if x2 < x1 or y2 < y1:
            problems.append(f"{where} ({path}): box x1={x1:g} y1={y1:g} x2={x2:g} y2={y2:g} is empty.")
            continue
        paths.append(path)
        labels.append(label)
        origins.append(f"{where} ({path})")
        # MATLAB boxes are 1-based and inclusive; store 0-based (x, y, width, height).
        boxes.append((x1 - 1.0, y1 - 1.0, x2 - x1 + 1.0, y2 - y1 + 1.0))
    names = {}
    if "class_names" in mat:
        for i, name in enumerate(mat["class_names"].reshape(-1), start=1):
            names[i] = str(_mat_scalar(name))
    label_array = np.array(labels, dtype=np.int64)
    index = SplitIndex(
        dataset="cars196",
        root=root,
        paths=np.array(paths, dtype=str),
        labels=label_array,
        split=split_by_class_range(label_array, "cars196"),
        class_names=names,
        bboxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
    )
    if not paths and not problems:
        problems.append(f"{mat_file}: no annotations.")
    problems += index_problems(index, origins, class_list="class_names of cars_annos.mat")
    if problems:
        raise MetadataError(mat_file, problems)
    return index


def read_sop(root):
    """Parse SOP's ``Ebay_train.txt``/``Ebay_test.txt`` into a :class:`SplitIndex`.

    Raises :class:`MetadataError` listing every bad ``file:line``: a field that
    is not a positive integer, an image id or path listed twice (also across the
    two files), a class in both files or outside its file's standard class ids
    (train 1–11,318, test 11,319–22,634), a class with two super classes.
    """
    root = find_dataset_root("sop", root)
    problems, paths, labels, supers, split, origins = [], [], [], [], [], []
    seen_ids, super_of, ranges = {}, {}, set()
    for name, part in (("Ebay_train.txt", TRAIN), ("Ebay_test.txt", TEST)):
        filename = os.path.join(root, name)
        if not os.path.isfile(filename):
            raise FileNotFoundError(f"metadata file {filename} is missing.")
        with open(filename, encoding="utf-8") as f:
            header = f.readline().split()
            if header[:4] != ["image_id", "class_id", "super_class_id", "path"]:
                raise ValueError(f"{filename}: expected header 'image_id class_id super_class_id path', got {header}.")
        lo, hi = STANDARD_SPLITS["sop"][f"{part}_classes"]
        for number, fields in _read_rows(filename, 4, problems, skip_header=True):
            where = f"{filename}:{number}"
            image_id, label, super_id = (
                parse_positive_int(value, what, where, problems)
                for value, what in zip(fields[:3], ("image id", "class id", "super class id"))
            )
            if None in (image_id, label, super_id):
                continue
            if image_id in seen_ids:
                problems.append(f"{where}: image id {image_id} is listed again (first at {seen_ids[image_id]}).")
                continue
            seen_ids[image_id] = where
            first_super = super_of.setdefault(label, (super_id, where))
            if first_super[0] != super_id:
                problems.append(
                    f"{where}: class {label} has super class {super_id} here but {first_super[0]} at {first_super[1]}."
                )
            if not lo <= label <= hi and label not in ranges:
                ranges.add(label)
                problems.append(f"{where}: class {label} is outside the {part} class ids {lo}-{hi} of {name}.")
            paths.append(fields[3])
            labels.append(label)
            supers.append(super_id)
            split.append(part)
            origins.append(where)
    index = SplitIndex(
        dataset="sop",
        root=root,
        paths=np.array(paths, dtype=str),
        labels=np.array(labels, dtype=np.int64),
        split=np.array(split, dtype=str),
        super_labels=np.array(supers, dtype=np.int64),
    )
    problems += index_problems(index, origins)
    if problems:
        raise MetadataError(root, problems)
    return index


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
