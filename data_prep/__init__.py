"""Command-line data preparation (absl flags, tqdm progress).

* ``python -m data_prep.download --dataset {cub,cars196,sop} --root DIR``: official archives,
  resumed, verified, extracted (:mod:`data_prep.download`, sources in :mod:`data_prep.sources`).
* ``python -m data_prep.prepare --dataset ... --root DIR``: parse the official layout, check every
  image, write the DML split index, optional TFRecord shards (:mod:`data_prep.prepare`).
* ``python -m data_prep.tfds_export --dataset ... --root DIR``: the TFDS route
  (:mod:`data_prep.tfds_export`).
* ``python -m data_prep.weights --model ...``: ImageNet backbone weights (:mod:`data_prep.weights`),
  fetched with the same resumable, verified download helpers.
"""
