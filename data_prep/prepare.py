"""Parse a dataset's official layout, check its images, write the split index.

    python -m data_prep.prepare --dataset cub --root /data/cub
    python -m data_prep.prepare --dataset sop --root /data/sop --tfrecord_shards 16 --tfrecord_resize 256

Steps:

1. parse the official metadata (``symm_keras.data.readers``) into the
   standard DML class split, checking it: a bad or repeated id, a label
   outside the class list, a path listed twice, a class in both splits, ...
   stop here with every ``file:line`` at fault (``MetadataError``, exit 1;
   the full list is written to ``metadata_problems.txt``, empty when none);
2. fail if any listed image is missing, with the list;
3. decode every image (``--check decode``, default) or only those whose bytes
   look truncated (``--check quick``); corrupt images are left out of the
   index with a warning and listed in ``corrupt_images.txt``
   (``--on_corrupt skip``, default) or fail (``--on_corrupt fail``). Labels
   are the dataset's own class ids, so leaving a file out shifts nothing;
4. write ``<root>/split_index.csv`` (paths relative to ``root``;
   ``symm_keras.data.load_split_index`` reads it) and ``prepare_summary.json``
   (image and class counts against the published ones, classes listed
   without images; each difference is also printed as a note);
5. optionally write TFRecord shards (``--tfrecord_shards``), re-encoded at
   ``--tfrecord_resize`` and cropped to the bounding boxes with ``--bbox_crop``
   (off by default, as in the Symm paper; for file-based pipelines use
   ``ImagePreprocessing(bbox_crop=True)`` instead).
"""

import dataclasses
import json
import os
import sys

import numpy as np

CHECKS = ("decode", "quick", "exist")


def prepare(
    dataset,
    root,
    check="decode",
    on_corrupt="skip",
    tfrecord_shards=0,
    tfrecord_dir=None,
    tfrecord_resize=None,
    bbox_crop=False,
    progress=True,
):
    """Run the steps of the module docstring; return the summary dict."""
    from symm_keras.data import readers
    from symm_keras.data.image_check import check_images
    from symm_keras.data.split_index import STANDARD_SPLITS, MetadataError, check_dataset_name

    check_dataset_name(dataset)
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, got {check!r}.")
    root = os.path.abspath(root)
    problems_file = os.path.join(root, "metadata_problems.txt")
    try:
        index = readers.READERS[dataset](root)
    except MetadataError as error:
        with open(problems_file, "w") as f:
            f.writelines(f"{p}\n" for p in error.problems)
        raise
    open(problems_file, "w").close()
    index.check_files()
    corrupt = ()
    if check != "exist":
        result = check_images(index, on_corrupt=on_corrupt, thorough=check == "decode", progress=progress)
        corrupt = result.corrupt_paths
        index = index.subset(result.ok)
    relative = np.array([os.path.relpath(p, root) for p in index.full_paths()], dtype=str)
    index = dataclasses.replace(index, root=root, paths=relative)
    index.save_csv(os.path.join(root, readers.INDEX_FILENAME))
    with open(os.path.join(root, "corrupt_images.txt"), "w") as f:
        f.writelines(f"{p}\n" for p in corrupt)
    standard = STANDARD_SPLITS[dataset]
    published_classes = standard["test_classes"][1]
    summary = {
        "dataset": dataset,
        "root": root,
        "images": len(index),
        "classes": int(index.num_classes),
        "train_images": int(np.sum(index.split == "train")),
        "test_images": int(np.sum(index.split == "test")),
        "published_train_images": standard["train_images"],
        "published_test_images": standard["test_images"],
        "published_classes": published_classes,
        "classes_listed": len(index.class_names),
        "classes_without_images": sorted(set(index.class_names) - set(index.labels.tolist())),
        "corrupt_skipped": list(corrupt),
        "check": check,
        "tfrecords": [],
    }
    if tfrecord_shards:
        from symm_keras.data.tfrecords import write_tfrecord_shards

        out = tfrecord_dir or os.path.join(root, "tfrecords")
        summary["tfrecords"] = write_tfrecord_shards(
            index, out, tfrecord_shards, resize=tfrecord_resize, bbox_crop=bbox_crop, progress=progress
        )
    summary["notes"] = _notes(summary)
    with open(os.path.join(root, "prepare_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def _notes(summary):
    """One line per way the prepared dataset differs from the published release."""
    notes = []
    for key in ("train_images", "test_images", "classes"):
        if summary[key] != summary[f"published_{key}"]:
            notes.append(f"{key.replace('_', ' ')}: {summary[key]}, published {summary[f'published_{key}']}")
    if summary["classes_without_images"]:
        shown = summary["classes_without_images"][:10]
        notes.append(f"{len(summary['classes_without_images'])} listed classes have no image, e.g. {shown}")
    if summary["corrupt_skipped"]:
        notes.append(f"{len(summary['corrupt_skipped'])} images do not decode and were left out (corrupt_images.txt)")
    return notes


def _define_flags():
    from absl import flags

    flags.DEFINE_enum("dataset", None, ["cub", "cars196", "sop"], "Dataset to prepare.")
    flags.DEFINE_string("root", None, "Dataset directory (as given to data_prep.download).")
    flags.DEFINE_enum("check", "decode", list(CHECKS), "Image check: full decode, truncation sniffing, or none.")
    flags.DEFINE_enum("on_corrupt", "skip", ["skip", "fail"], "Leave corrupt images out (listed) or fail.")
    flags.DEFINE_integer("tfrecord_shards", 0, "Write this many TFRecord shards per split (0: none).")
    flags.DEFINE_string("tfrecord_dir", None, "Where to write the shards (default <root>/tfrecords).")
    flags.DEFINE_integer("tfrecord_resize", None, "Re-encode shard images at this square size (e.g. 256).")
    flags.DEFINE_bool("bbox_crop", False, "Crop shard images to the bounding boxes (needs --tfrecord_resize).")
    flags.DEFINE_bool("progress", True, "Show tqdm progress bars.")
    flags.mark_flags_as_required(["dataset", "root"])


def main(argv):
    from absl import flags

    from symm_keras.data.image_check import CorruptImagesError
    from symm_keras.data.split_index import MetadataError, MissingFilesError

    del argv
    f = flags.FLAGS
    try:
        summary = prepare(
            f.dataset, f.root, f.check, f.on_corrupt, f.tfrecord_shards, f.tfrecord_dir, f.tfrecord_resize,
            f.bbox_crop, f.progress,
        )
    except MetadataError as error:
        print(f"error: {error}\n(all {len(error.problems)} listed in {f.root}/metadata_problems.txt)", file=sys.stderr)
        return 1
    except (MissingFilesError, CorruptImagesError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    hidden = ("corrupt_skipped", "classes_without_images", "notes")
    print(json.dumps({k: v for k, v in summary.items() if k not in hidden}, indent=2))
    print("metadata checked: ids, labels, class list and splits are consistent")
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
