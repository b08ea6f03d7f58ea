"""Image decoding, augmentation and per-backbone normalisation (tf.data side).

The papers' protocol (Symm Sec. 4, DAMLRRM Sec. 4, after Song et al. 2016):

* train: resize to ``resize × resize`` (256 × 256, aspect ratio not kept),
  random ``crop_size × crop_size`` crop (227) and a random horizontal flip;
* test: the same resize, then the centre crop.

:class:`SymmOfficialPreprocessing` is the released Symm code's pipeline
instead (clovaai/symmetrical-synthesis ``dataset/data_load.py`` ``load_image``,
``test.py`` ``load_image_paths``, ``models.py`` ``vgg_preprocess``):

* train: cut a random border of ``m ∈ [1, ⌊0.05·min(H, W)⌋)`` pixels from
  every side (none when that range is empty), area-resize to ``resize ×
  resize`` (``int(1.125 · 227) = 255``), random ``crop_size`` crop at offsets
  ``[0, resize − crop_size)`` (numpy ``randint``: the last offset is never
  drawn) and a random horizontal flip;
* test: the whole image area-resized to ``crop_size × crop_size``;
* ``mode="rgb_mean"``: RGB minus ``(123.69, 116.78, 103.94)``, no channel swap.

OpenCV's ``INTER_AREA`` is TensorFlow's ``area`` resize when shrinking (exact
pixel-area averages); enlarging (an image side under 255 px) differs.

Randomness is stateless: every image's crop and flip are a function of
``(seed, element_id)``, so a pipeline restarted at step ``s`` reproduces the
exact batches it would have produced.

Normalisation modes (the ``keras.applications`` conventions):

* ``"caffe"``: RGB → BGR, subtract the ImageNet mean ``(103.939, 116.779,
  123.68)``; values stay on the 0–255 scale (GoogLeNet / Inception v1 Caffe weights);
* ``"inception"`` (alias ``"tf"``): ``x / 127.5 − 1`` in ``[−1, 1]``
  (keras.applications Inception, MobileNet);
* ``"torch"``: ``(x / 255 − mean) / std`` with the ImageNet RGB statistics;
* ``"rgb_mean"``: RGB minus ``(123.69, 116.78, 103.94)`` (the released Symm code);
* ``"none"``: float32 RGB on the 0–255 scale.
"""

import tensorflow as tf

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_RGB_MEAN = (0.485, 0.456, 0.406)
TORCH_RGB_STD = (0.229, 0.224, 0.225)
SYMM_RGB_MEAN = (123.69, 116.78, 103.94)
MODES = ("caffe", "inception", "tf", "torch", "rgb_mean", "none")


class ImagePreprocessing:
    """Decode → (optional box crop) → resize → crop (+ flip) → normalise.

    Args:
        crop_size: side of the square crop fed to the network (227 in the papers).
        resize: side the image is resized to first (256); must be ``>= crop_size``.
        mode: normalisation, one of ``"caffe"``, ``"inception"``/``"tf"``,
            ``"torch"``, ``"none"`` (see the module docstring).
        random_flip: random horizontal flip in training.
        bbox_crop: crop to the dataset's bounding box before resizing (off by
            default, as in the Symm paper; needs ``SplitIndex.bboxes``).
    """

    def __init__(self, crop_size=227, resize=256, mode="caffe", random_flip=True, bbox_crop=False):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if not (isinstance(crop_size, int) and crop_size > 0):
            raise ValueError(f"crop_size must be a positive int, got {crop_size!r}.")
        if not (isinstance(resize, int) and resize >= crop_size):
            raise ValueError(f"resize must be an int >= crop_size ({crop_size}), got {resize!r}.")
        self.crop_size = crop_size
        self.resize = resize
        self.mode = mode
        self.random_flip = bool(random_flip)
        self.bbox_crop = bool(bbox_crop)

    def get_config(self):
        return {
            "crop_size": self.crop_size,
            "resize": self.resize,
            "mode": self.mode,
            "random_flip": self.random_flip,
            "bbox_crop": self.bbox_crop,
        }

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"ImagePreprocessing({args})"

    @property
    def output_shape(self):
        return (self.crop_size, self.crop_size, 3)

    @staticmethod
    def decode(encoded):
        """JPEG/PNG/BMP/GIF bytes → uint8 ``(H, W, 3)``; greyscale and RGBA become RGB."""
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return image

    @staticmethod
    def crop_to_box(image, bbox):
        """Crop to ``bbox = (x, y, width, height)`` in pixels, clipped to the image."""
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        box = tf.cast(tf.round(tf.cast(bbox, tf.float32)), tf.int32)
        x = tf.clip_by_value(box[0], 0, width - 1)
        y = tf.clip_by_value(box[1], 0, height - 1)
        w = tf.clip_by_value(box[2], 1, width - x)
        h = tf.clip_by_value(box[3], 1, height - y)
        return image[y : y + h, x : x + w]

    def _resized(self, encoded, bbox):
        image = self.decode(encoded)
        if self.bbox_crop:
            if bbox is None:
                raise ValueError("bbox_crop=True needs the bounding boxes of the index (SplitIndex.bboxes).")
            image = self.crop_to_box(image, bbox)
        return tf.image.resize(image, (self.resize, self.resize), method="bilinear")

    def normalize(self, image):
        """Float RGB on the 0–255 scale → the backbone's input convention."""
        image = tf.cast(image, tf.float32)
        if self.mode == "caffe":
            return image[..., ::-1] - tf.constant(CAFFE_BGR_MEAN, tf.float32)
        if self.mode in ("inception", "tf"):
            return image / 127.5 - 1.0
        if self.mode == "torch":
            return (image / 255.0 - tf.constant(TORCH_RGB_MEAN)) / tf.constant(TORCH_RGB_STD)
        if self.mode == "rgb_mean":
            return image - tf.constant(SYMM_RGB_MEAN, tf.float32)
        return image

    def train_image(self, encoded, seed, bbox=None):
        """Training transform; ``seed`` is an int64 ``(2,)`` tensor (stateless randomness)."""
        image = self._resized(encoded, bbox)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
        image = tf.image.stateless_random_crop(image, (self.crop_size, self.crop_size, 3), seed=crop_seed)
        if self.random_flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return self.normalize(image)

    def test_image(self, encoded, bbox=None):
        """Test transform: resize, then the centre crop."""
        image = self._resized(encoded, bbox)
        offset = (self.resize - self.crop_size) // 2
        image = image[offset : offset + self.crop_size, offset : offset + self.crop_size]
        return self.normalize(image)


class SymmOfficialPreprocessing(ImagePreprocessing):
    """The released Symm code's transforms (module docstring): border crop → area resize → crop + flip.

    Args:
        crop_size: network input side (227).
        resize: side of the resized image in training (``int(1.125 · crop_size)`` = 255 in the code).
        mode: normalisation (``"rgb_mean"`` in the code).
        random_flip: random horizontal flip in training.
        bbox_crop: crop to the box first, as ``dataset/cooking_CARS.py`` does
            (``img[y1:y2, x1:x2]`` with the 1-based MATLAB corners used as
            0-based indices: one pixel in from the box's top-left corner, its
            last row and column dropped).
    """

    def __init__(self, crop_size=227, resize=None, mode="rgb_mean", random_flip=True, bbox_crop=False):
        resize = int(crop_size * 1.125) if resize is None else resize
        super().__init__(crop_size=crop_size, resize=resize, mode=mode, random_flip=random_flip, bbox_crop=bbox_crop)
        if self.resize == self.crop_size:
            raise ValueError(f"resize must be > crop_size ({crop_size}) for the official random crop, got {resize}.")

    @staticmethod
    def crop_to_box(image, bbox):
        """``cooking_CARS.py``'s crop of the stored 0-based ``(x, y, width, height)`` box."""
        bbox = tf.cast(bbox, tf.float32)
        return ImagePreprocessing.crop_to_box(image, bbox + tf.constant([1.0, 1.0, -1.0, -1.0]))

    def _decoded(self, encoded, bbox):
        image = self.decode(encoded)
        if self.bbox_crop:
            if bbox is None:
                raise ValueError("bbox_crop=True needs the bounding boxes of the index (SplitIndex.bboxes).")
            image = self.crop_to_box(image, bbox)
        return image

    def _area_resize(self, image, size):
        return tf.image.resize(tf.cast(image, tf.float32), (size, size), method="area")

    def train_image(self, encoded, seed, bbox=None):
        """Border crop, area resize, random crop and flip; ``seed`` an int64 ``(2,)`` tensor."""
        image = self._decoded(encoded, bbox)
        margin_seed, offset_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=3))
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        high = tf.minimum(height, width) * 5 // 100  # int(min_len * 0.05)
        margin = tf.where(high > 1, tf.random.stateless_uniform([], margin_seed, minval=1,
                                                                maxval=tf.maximum(high, 2), dtype=tf.int32), 0)
        image = image[margin : height - margin, margin : width - margin]
        image = self._area_resize(image, self.resize)
        offsets = tf.random.stateless_uniform([2], offset_seed, minval=0, maxval=self.resize - self.crop_size,
                                              dtype=tf.int32)  # fmt: skip
        image = image[offsets[0] : offsets[0] + self.crop_size, offsets[1] : offsets[1] + self.crop_size]
        if self.random_flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return self.normalize(image)

    def test_image(self, encoded, bbox=None):
        """The whole (box-cropped) image area-resized to ``crop_size × crop_size``."""
        return self.normalize(self._area_resize(self._decoded(encoded, bbox), self.crop_size))


PIPELINES = {"paper": ImagePreprocessing, "symm_official": SymmOfficialPreprocessing}


def make_preprocessing(pipeline="paper", **kwargs):
    """The preprocessing named ``pipeline`` (``"paper"`` or ``"symm_official"``) built with ``kwargs``."""
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {sorted(PIPELINES)}, got {pipeline!r}.")
    return PIPELINES[pipeline](**kwargs)
