"""symm_keras.data: CUB-200-2011 / Cars196 / SOP indices and tf.data pipelines.

Typical use::

    from symm_keras import data
    index = data.load_split_index("cub", "/data/CUB_200_2011")   # fails listing missing files
    train = index.train()                                          # classes 1-100
    prep = data.ImagePreprocessing(crop_size=227, resize=256, mode="caffe")
    sampler = data.ClassBalancedSampler(train.labels, 64, 2, seed=0)
    ds = data.sampler_batches(train, sampler, prep, seed=0, start_step=resume_step)
    model.fit(ds, steps_per_epoch=sampler.steps_per_epoch, ...)
    test_ds = data.eval_dataset(index.test(), prep, batch_size=128)

See docs/data.md for the batch layouts and the resume rule.
"""

from symm_keras.data.image_check import CorruptImagesError, ImageCheck, check_images
from symm_keras.data.pipelines import (
    TripletFeed,
    asymmetric_batches,
    eligible_rows,
    eval_dataset,
    pk_batches,
    sampler_batches,
)
from symm_keras.data.preprocessing import ImagePreprocessing
from symm_keras.data.readers import (
    INDEX_FILENAME,
    find_dataset_root,
    load_split_index,
    read_cars196,
    read_cub,
    read_sop,
)
from symm_keras.data.samplers import (
    AsymmetricSampler,
    ClassBalancedSampler,
    TripletSampler,
    images_seen,
)
from symm_keras.data.split_index import (
    DATASETS,
    STANDARD_SPLITS,
    MissingFilesError,
    SplitIndex,
)
from symm_keras.data.tfrecords import load_encoded_images, write_tfrecord_shards

__all__ = [
    "AsymmetricSampler",
    "ClassBalancedSampler",
    "CorruptImagesError",
    "DATASETS",
    "INDEX_FILENAME",
    "ImageCheck",
    "ImagePreprocessing",
    "MissingFilesError",
    "STANDARD_SPLITS",
    "SplitIndex",
    "TripletFeed",
    "TripletSampler",
    "asymmetric_batches",
    "check_images",
    "eligible_rows",
    "eval_dataset",
    "find_dataset_root",
    "images_seen",
    "load_encoded_images",
    "load_split_index",
    "pk_batches",
    "read_cars196",
    "read_cub",
    "read_sop",
    "sampler_batches",
    "write_tfrecord_shards",
]
