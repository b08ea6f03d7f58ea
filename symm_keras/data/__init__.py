"""symm_keras.data: CUB-200-2011 / Cars196 / SOP indices, tf.data pipelines, in-memory P×K batches.

Typical use::

    from symm_keras import data
    index = data.load_split_index("cub", "/data/CUB_200_2011")   # checks the metadata, lists missing files
    train = index.train()                                          # classes 1-100
    prep = data.ImagePreprocessing(crop_size=227, resize=256, mode="caffe")
    sampler = data.ClassBalancedSampler(train.labels, 64, 2, seed=0)
    ds = data.sampler_batches(train, sampler, prep, seed=0, start_step=resume_step)
    model.fit(ds, steps_per_epoch=sampler.steps_per_epoch, ...)
    test_ds = data.eval_dataset(index.test(), prep, batch_size=128)

    # arrays in memory, no TensorFlow needed (any Keras backend):
    model.fit(data.PKArrayBatches(x, y, classes_per_batch=16, images_per_class=4, seed=0), epochs=10)

Names are imported on first use: the split index, readers, samplers and
``PKArrayBatches`` need only NumPy (and Keras for ``PKArrayBatches``); the
image pipelines, image checks, preprocessing and TFRecords import TensorFlow.
See docs/data.md for the batch layouts and the resume rule.
"""

import importlib

_EXPORTS = {
    "array_batches": ("PKArrayBatches",),
    "image_check": ("CorruptImagesError", "ImageCheck", "check_decode", "check_images"),
    "pipelines": (
        "TripletFeed",
        "asymmetric_batches",
        "eligible_rows",
        "eval_dataset",
        "pk_batches",
        "sampler_batches",
    ),
    "preprocessing": ("ImagePreprocessing",),
    "readers": ("INDEX_FILENAME", "find_dataset_root", "load_split_index", "read_cars196", "read_cub", "read_sop"),
    "samplers": ("AsymmetricSampler", "ClassBalancedSampler", "TripletSampler", "images_seen"),
    "split_index": ("DATASETS", "STANDARD_SPLITS", "MetadataError", "MissingFilesError", "SplitIndex"),
    "tfrecords": ("load_encoded_images", "write_tfrecord_shards"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
_NEEDS_TENSORFLOW = ("image_check", "pipelines", "preprocessing", "tfrecords")

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except ModuleNotFoundError as error:
        if module in _NEEDS_TENSORFLOW and error.name == "tensorflow":
            raise ModuleNotFoundError(
                f"symm_keras.data.{name} needs TensorFlow (tf.data image pipelines); install tensorflow. "
                "For arrays in memory use symm_keras.data.PKArrayBatches, which needs no TensorFlow.",
                name="tensorflow",
            ) from error
        raise
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
