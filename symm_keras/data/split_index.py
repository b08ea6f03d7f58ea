"""The split index: one row per image — (path, label, split) — plus metadata.

Deep-metric-learning benchmarks split by *class*, not by image (docs/data.md,
"Official layouts read"): the first half of the classes trains, the second half
tests, so no test class is ever seen in training.

| dataset | train classes | test classes | train / test images |
| --- | --- | --- | --- |
| CUB-200-2011 | 1–100 | 101–200 | 5,864 / 5,924 |
| Cars196 | 1–98 | 99–196 | 8,054 / 8,131 |
| SOP | ``Ebay_train.txt`` (1–11,318) | ``Ebay_test.txt`` (11,319–22,634) | 59,551 / 60,502 |

Labels are the dataset's own 1-based class ids and are never renumbered, so a
skipped or missing file can never shift another image's label. Row ``i`` of
``index.train()`` is image ``i`` of every training pipeline's index space
(samplers, mining triplets and ``eval_dataset`` all use these row numbers).
"""

import csv
import dataclasses
import os

import numpy as np

TRAIN = "train"
TEST = "test"

#: Official DML class split and image counts (docs/data.md, "Official layouts read").
STANDARD_SPLITS = {
    "cub": {"train_classes": (1, 100), "test_classes": (101, 200), "train_images": 5864, "test_images": 5924},
    "cars196": {"train_classes": (1, 98), "test_classes": (99, 196), "train_images": 8054, "test_images": 8131},
    "sop": {"train_classes": (1, 11318), "test_classes": (11319, 22634), "train_images": 59551, "test_images": 60502},
}
DATASETS = tuple(STANDARD_SPLITS)

_CSV_FIELDS = ("path", "label", "split", "super_label", "bbox_x", "bbox_y", "bbox_w", "bbox_h")


class MissingFilesError(FileNotFoundError):
    """Images listed by the dataset's metadata are not on disk."""

    def __init__(self, root, missing, total):
        self.root = str(root)
        self.missing = list(missing)
        shown = "\n  ".join(self.missing[:20])
        more = f"\n  ... and {len(self.missing) - 20} more" if len(self.missing) > 20 else ""
        super().__init__(
            f"{len(self.missing)} of {total} images listed for {self.root} are missing:\n  {shown}{more}\n"
            "Download/extract the dataset again (python -m data_prep.download), or restrict the index "
            "to the images you have (SplitIndex.restrict_classes / SplitIndex.existing)."
        )


class MetadataError(ValueError):
    """A dataset's metadata contradicts itself; ``problems`` lists each as ``"file:line: what"``."""

    def __init__(self, source, problems):
        self.source = str(source)
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:30])
        more = f"\n  ... and {len(self.problems) - 30} more" if len(self.problems) > 30 else ""
        super().__init__(
            f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} in the metadata of "
            f"{self.source}:\n  {shown}{more}\n"
            "Nothing was read: a wrong id, label or split would silently mislabel images or leak test images "
            "into training. Fix these lines or restore the official files (python -m data_prep.download)."
        )


def parse_positive_int(text, what, where, problems):
    """``int(text)`` when it is a positive integer, else ``None`` with ``"where: what ..."`` added to ``problems``."""
    try:
        value = int(text)
    except ValueError:
        problems.append(f"{where}: {what} {text!r} is not an integer.")
        return None
    if value < 1:
        problems.append(f"{where}: {what} {value} is not a positive integer.")
        return None
    return value


def check_dataset_name(dataset):
    if dataset not in STANDARD_SPLITS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
    return dataset


@dataclasses.dataclass(frozen=True, eq=False)
class SplitIndex:
    """Image paths, class labels and split of a DML dataset.

    Attributes:
        dataset: ``"cub"``, ``"cars196"`` or ``"sop"``.
        root: directory the relative ``paths`` are resolved against.
        paths: ``(n,)`` str array of image paths relative to ``root``.
        labels: ``(n,)`` int64 array of the dataset's own class ids (1-based).
        split: ``(n,)`` str array, ``"train"`` or ``"test"``.
        class_names: dict ``label -> name``.
        bboxes: optional ``(n, 4)`` float32 ``(x, y, width, height)`` boxes in pixels.
        super_labels: optional ``(n,)`` int64 super-class ids (SOP).
    """

    dataset: str
    root: str
    paths: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    class_names: dict = dataclasses.field(default_factory=dict)
    bboxes: np.ndarray = None
    super_labels: np.ndarray = None

    def __post_init__(self):
        n = len(self.paths)
        for name in ("labels", "split"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SplitIndex.{name} has {len(getattr(self, name))} rows but paths has {n}.")
        for name in ("bboxes", "super_labels"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"SplitIndex.{name} has {len(value)} rows but paths has {n}.")
        bad = set(np.unique(self.split)) - {TRAIN, TEST}
        if bad:
            raise ValueError(f"SplitIndex.split values must be 'train' or 'test', got {sorted(bad)}.")

    def __len__(self):
        return len(self.paths)

    def __repr__(self):
        return (
            f"SplitIndex(dataset={self.dataset!r}, root={self.root!r}, images={len(self)}, "
            f"classes={self.num_classes}, train={int(np.sum(self.split == TRAIN))}, "
            f"test={int(np.sum(self.split == TEST))})"
        )

    @property
    def num_classes(self):
        return len(np.unique(self.labels))

    @property
    def classes(self):
        """Sorted unique class labels."""
        return np.unique(self.labels)

    def full_paths(self):
        """Absolute (root-joined) paths as a str array."""
        return np.array([os.path.join(self.root, p) for p in self.paths], dtype=str)

    def subset(self, rows):
        """A new index with the given rows (bool mask or integer positions), order kept."""
        rows = np.asarray(rows)
        if rows.dtype == bool and rows.shape != (len(self),):
            raise ValueError(f"boolean row mask must have shape ({len(self)},), got {rows.shape}.")
        return dataclasses.replace(
            self,
            paths=self.paths[rows],
            labels=self.labels[rows],
            split=self.split[rows],
            bboxes=None if self.bboxes is None else self.bboxes[rows],
            super_labels=None if self.super_labels is None else self.super_labels[rows],
        )

    def train(self):
        """The training rows (the standard DML training classes)."""
        return self.subset(self.split == TRAIN)

    def test(self):
        """The test rows (the standard DML test classes)."""
        return self.subset(self.split == TEST)

    def restrict_classes(self, classes):
        """Keep only images whose label is in ``classes``."""
        return self.subset(np.isin(self.labels, np.asarray(list(classes))))

    def resplit_by_class(self, train_classes):
        """Re-split by class: labels in ``train_classes`` train, every other label tests.

        Used for the TFDS route (whose splits are per image) and for samples such
        as ``cub_sample`` (classes 1–10: ``resplit_by_class(range(1, 6))``).
        """
        is_train = np.isin(self.labels, np.asarray(list(train_classes)))
        return dataclasses.replace(self, split=np.where(is_train, TRAIN, TEST).astype(str))

    def missing_files(self):
        """Relative paths that are not present under ``root``."""
        return [p for p, f in zip(self.paths, self.full_paths()) if not os.path.isfile(f)]

    def check_files(self):
        """Raise :class:`MissingFilesError` listing every missing image; return ``self``."""
        missing = self.missing_files()
        if missing:
            raise MissingFilesError(self.root, missing, len(self))
        return self

    def existing(self):
        """A new index without the rows whose file is missing (labels untouched)."""
        present = np.array([os.path.isfile(f) for f in self.full_paths()], dtype=bool)
        return self.subset(present)

    def save_csv(self, filename):
        """Write the index as CSV (relative paths; ``load_csv`` restores it)."""
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        with open(filename, "w", newline="") as f:
            f.write(f"# symm_keras split index: dataset={self.dataset}\n")
            writer = csv.writer(f)
            writer.writerow(_CSV_FIELDS)
            for i in range(len(self)):
                box = self.bboxes[i] if self.bboxes is not None else ("", "", "", "")
                sup = self.super_labels[i] if self.super_labels is not None else ""
                writer.writerow([self.paths[i], int(self.labels[i]), self.split[i], sup, *box])
        names = os.path.splitext(filename)[0] + ".classes.csv"
        with open(names, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("label", "name"))
            for label in sorted(self.class_names):
                writer.writerow((label, self.class_names[label]))
        return filename

    @classmethod
    def load_csv(cls, filename, root=None):
        """Read an index written by :meth:`save_csv` (``root`` defaults to the CSV's folder).

        Raises :class:`MetadataError` naming each bad ``file:line`` (see :func:`index_problems`).
        """
        with open(filename, newline="") as f:
            header = f.readline()
            if not header.startswith("# symm_keras split index: dataset="):
                raise ValueError(f"{filename} is not a symm_keras split index (bad first line {header!r}).")
            dataset = check_dataset_name(header.strip().split("=", 1)[1])
            reader = csv.DictReader(f)
            rows, where = [], []
            for row in reader:
                rows.append(row)
                where.append(f"{filename}:{reader.line_num + 1}")  # + the comment line
        if not rows:
            raise ValueError(f"split index {filename} has no rows.")
        missing_fields = set(_CSV_FIELDS) - set(rows[0])
        if missing_fields:
            raise ValueError(f"split index {filename} lacks columns {sorted(missing_fields)}.")
        has_box = rows[0]["bbox_x"] != ""
        has_super = rows[0]["super_label"] != ""
        problems, good = [], []
        labels, supers, boxes = [], [], []
        for i, (origin, r) in enumerate(zip(where, rows)):
            label = parse_positive_int(r["label"], "label", origin, problems)
            sup = parse_positive_int(r["super_label"], "super_label", origin, problems) if has_super else 0
            if r["split"] not in (TRAIN, TEST):
                problems.append(f"{origin}: split {r['split']!r} is not 'train' or 'test'.")
                continue
            box_fields = [r[k] for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")]
            try:
                box = [float(v) for v in box_fields] if has_box else None
            except ValueError:
                problems.append(f"{origin}: bounding box {box_fields} is not four numbers.")
                continue
            if label is not None and sup is not None:
                good.append(i)
                labels.append(label)
                supers.append(sup)
                boxes.append(box)
        names_file = os.path.splitext(filename)[0] + ".classes.csv"
        class_names = {}
        if os.path.exists(names_file):
            with open(names_file, newline="") as f:
                class_names = {int(r["label"]): r["name"] for r in csv.DictReader(f)}
        kept = [rows[i] for i in good]
        index = cls(
            dataset=dataset,
            root=os.path.abspath(root or os.path.dirname(os.path.abspath(filename))),
            paths=np.array([r["path"] for r in kept], dtype=str),
            labels=np.array(labels, dtype=np.int64),
            split=np.array([r["split"] for r in kept], dtype=str),
            class_names=class_names,
            bboxes=np.array(boxes, dtype=np.float32).reshape(-1, 4) if has_box else None,
            super_labels=np.array(supers, dtype=np.int64) if has_super else None,
        )
        problems += index_problems(index, [where[i] for i in good], class_list=names_file)
        if problems:
            raise MetadataError(filename, problems)
        return index


def split_by_class_range(labels, dataset):
    """``"train"``/``"test"`` per label from the standard class ranges of ``dataset``."""
    lo, hi = STANDARD_SPLITS[check_dataset_name(dataset)]["train_classes"]
    labels = np.asarray(labels)
    return np.where((labels >= lo) & (labels <= hi), TRAIN, TEST).astype(str)



def index_problems(index, origins, class_list="the class list", label_origins=None):
    """Inconsistencies of ``index`` as ``"origin: what is wrong"`` strings (empty: none).

    ``origins[i]`` names where row ``i`` came from (``".../images.txt:5"``),
    ``label_origins[i]`` where its label came from (default: ``origins``).
    Checked: every class id lies in the dataset's ids (1 to its last test
    class) and, when the index has class names, in ``class_list`` (their
    source, for the message); no path is listed twice (a second listing in the
    other split would leak a test image into training); every class lies in
    one split only (the DML splits are by class).
    """
    problems = []
    label_origins = origins if label_origins is None else label_origins
    last = STANDARD_SPLITS[index.dataset]["test_classes"][1]
    labels, splits, paths = index.labels.tolist(), index.split.tolist(), index.paths.tolist()
    for origin, label in zip(label_origins, labels):
        if index.class_names and label not in index.class_names:
            problems.append(f"{origin}: class {label} is not in {class_list}.")
        elif not 1 <= label <= last:
            problems.append(f"{origin}: class {label} is outside the {index.dataset} class ids 1-{last}.")
    first_row = {}
    for i, path in enumerate(paths):
        j = first_row.setdefault(os.path.normpath(path), i)
        if j != i:
            leak = f", now in the {splits[i]} split after the {splits[j]} split" if splits[i] != splits[j] else ""
            problems.append(f"{origins[i]}: {path} is listed again (first at {origins[j]}{leak}).")
    class_row, reported = {}, set()
    for i, (label, part) in enumerate(zip(labels, splits)):
        j = class_row.setdefault(label, i)
        if splits[j] != part and label not in reported:
            reported.add(label)
            problems.append(
                f"{label_origins[i]}: class {label} is in the {part} split here but in the {splits[j]} split at "
                f"{label_origins[j]} (the splits are by class)."
            )
    return problems
