"""The TFDS route: export a TensorFlow Datasets build to files + a DML split index.

    python -m data_prep.tfds_export --dataset cub --root /data/cub_tfds [--data_dir ~/tensorflow_datasets]

TFDS names: ``caltech_birds2011`` (cub), ``cars196``, ``stanford_online_products`` (sop).
TFDS's ``caltech_birds2011`` and ``cars196`` splits are per image, NOT the DML
split, so both TFDS splits are read and re-split by class (CUB 1–100 /
101–200, Cars196 1–98 / 99–196); SOP's TFDS splits are ``Ebay_train`` /
``Ebay_test`` and are kept. TFDS labels are 0-based; they are written as the
official 1-based class ids (``label + 1``), the same ids the official-layout
readers give. The export is checked like the official layouts (label within
the builder's classes and the dataset's class ids, every class in one split,
:func:`symm_keras.data.split_index.index_problems`); a fault raises
``MetadataError`` naming the TFDS split and example number, and no
``split_index.csv`` is written.

The encoded image bytes are written unchanged to
``<root>/images/<class id>/<n>.<ext>`` with ``<root>/split_index.csv``, so every
pipeline of ``symm_keras.data`` works on the result. ``--data_dir`` may hold an
already-built TFDS dataset (offline); ``--manual_dir`` is passed to TFDS for
builders that read manually placed files. The TFDS ``cars196`` download URLs
are dead upstream: for Cars196 use ``data_prep.prepare`` on a local directory
holding ``car_ims/`` and ``cars_annos.mat``.
"""

import os
import sys

import numpy as np

TFDS_NAMES = {"cub": "caltech_birds2011", "cars196": "cars196", "sop": "stanford_online_products"}
_LABEL_KEYS = {"cub": "label", "cars196": "label", "sop": "class_id"}


def _extension(encoded):
    if encoded[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "jpg"


def export_tfds(dataset, root, data_dir=None, download=False, manual_dir=None, progress=True):
    """Write the images of a TFDS dataset under ``root``; return its :class:`SplitIndex`."""
    import tensorflow_datasets as tfds

    from symm_keras.data.readers import INDEX_FILENAME
    from symm_keras.data.split_index import (
        TEST,
        TRAIN,
        MetadataError,
        SplitIndex,
        index_problems,
        split_by_class_range,
    )

    if dataset not in TFDS_NAMES:
        raise ValueError(f"dataset must be one of {tuple(TFDS_NAMES)}, got {dataset!r}.")
    builder = tfds.builder(TFDS_NAMES[dataset], data_dir=data_dir)
    if download:
        config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=config)
    label_key = _LABEL_KEYS[dataset]
    class_names = {}
    feature = builder.info.features[label_key]
    if getattr(feature, "names", None) and not feature.names[0].isdigit():
        class_names = {i + 1: name for i, name in enumerate(feature.names)}
    num_classes = getattr(feature, "num_classes", None)
    root = os.path.abspath(root)
    paths, labels, split, supers, origins, problems = [], [], [], [], [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"export {TFDS_NAMES[dataset]}", unit="img", leave=False)
    for tfds_split in ("train", "test"):
        ds = builder.as_dataset(split=tfds_split, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False)
        for n, example in enumerate(ds.as_numpy_iterator()):
            origin = f"TFDS {TFDS_NAMES[dataset]} {tfds_split} example {n}"
            label = int(example[label_key]) + 1
            if num_classes is not None and not 1 <= label <= num_classes:
                problems.append(f"{origin}: label {label - 1} is outside the {num_classes} classes 0-{num_classes - 1}.")
                continue
            encoded = example["image"]
            rel = os.path.join("images", str(label), f"{tfds_split}_{n:06d}.{_extension(encoded)}")
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(root, rel), "wb") as f:
                f.write(encoded)
            paths.append(rel)
            labels.append(label)
            split.append(TRAIN if tfds_split == "train" else TEST)
            origins.append(origin)
            if dataset == "sop":
                supers.append(int(example["super_class_id"]) + 1)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if not paths and not problems:
        raise ValueError(f"TFDS {TFDS_NAMES[dataset]} yielded no images (data_dir={data_dir!r}).")
    label_array = np.array(labels, dtype=np.int64)
    split_array = np.array(split, dtype=str) if dataset == "sop" else split_by_class_range(label_array, dataset)
    index = SplitIndex(
        dataset=dataset,
        root=root,
        paths=np.array(paths, dtype=str),
        labels=label_array,
        split=split_array,
        class_names=class_names,
        super_labels=np.array(supers, dtype=np.int64) if dataset == "sop" else None,
    )
    problems += index_problems(index, origins)
    if problems:
        raise MetadataError(f"TFDS {TFDS_NAMES[dataset]}", problems)
    index.save_csv(os.path.join(root, INDEX_FILENAME))
    return index


def _define_flags():
    from absl import flags

    flags.DEFINE_enum("dataset", None, list(TFDS_NAMES), "Dataset to export.")
    flags.DEFINE_string("root", None, "Directory to write images/ and split_index.csv into.")
    flags.DEFINE_string("data_dir", None, "TFDS data_dir (may hold an already-built dataset).")
    flags.DEFINE_bool("download", False, "Let TFDS download and prepare the dataset first.")
    flags.DEFINE_string("manual_dir", None, "TFDS manual_dir for manually placed files.")
    flags.mark_flags_as_required(["dataset", "root"])


def main(argv):
    from absl import flags

    del argv
    f = flags.FLAGS
    try:
        index = export_tfds(f.dataset, f.root, f.data_dir, f.download, f.manual_dir)
    except Exception as error:  # TFDS raises many types (missing build, dead URL): report, do not trace
        print(f"error: TFDS export of {f.dataset} failed: {error}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
