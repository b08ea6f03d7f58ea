"""TF-slim inception_v1 checkpoint converter, on checkpoints written here with the real names and shapes."""

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from symm_keras.models.inception_v1 import inception_v1
from symm_keras.models.registry import build_backbone
from symm_keras.models.slim_checkpoint import (
    load_slim_inception_v1_checkpoint,
    read_slim_checkpoint,
    slim_checkpoint_shapes,
)

# Shapes as in tensorflow/models research/slim/nets/inception_v1.py (and the 2016_08_28 checkpoint).
REAL_SHAPES = {
    "InceptionV1/Conv2d_1a_7x7/weights": (7, 7, 3, 64),
    "InceptionV1/Conv2d_2c_3x3/weights": (3, 3, 64, 192),
    "InceptionV1/Mixed_3b/Branch_2/Conv2d_0b_3x3/weights": (3, 3, 16, 32),
    "InceptionV1/Mixed_3c/Branch_0/Conv2d_0a_1x1/weights": (1, 1, 256, 128),
    "InceptionV1/Mixed_4b/Branch_1/Conv2d_0a_1x1/weights": (1, 1, 480, 96),
    "InceptionV1/Mixed_4e/Branch_1/Conv2d_0b_3x3/weights": (3, 3, 144, 288),
    "InceptionV1/Mixed_5b/Branch_2/Conv2d_0a_3x3/weights": (3, 3, 32, 128),
    "InceptionV1/Mixed_5c/Branch_3/Conv2d_0b_1x1/weights": (1, 1, 832, 128),
    "InceptionV1/Mixed_5c/Branch_3/Conv2d_0b_1x1/BatchNorm/moving_variance": (128,),
    "InceptionV1/Logits/Conv2d_0c_1x1/weights": (1, 1, 1024, 1001),
    "InceptionV1/Logits/Conv2d_0c_1x1/biases": (1001,),
}


def random_slim_tensors(rng, drop=()):
    tensors = {}
    for name, shape in slim_checkpoint_shapes().items():
        if name in drop:
            continue
        if name.endswith("moving_variance"):
            tensors[name] = rng.uniform(0.5, 2.0, size=shape).astype("float32")
        else:
            tensors[name] = (rng.normal(size=shape) * 0.1).astype("float32")
    tensors["global_step"] = np.array(1234567, dtype="int64")
    return tensors


def write_checkpoint_v2(prefix, tensors):
    names = list(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
    return str(prefix)


def write_checkpoint_v1(path, tensors):
    """A V1 (single-file, like inception_v1.ckpt) checkpoint written by a tf.compat.v1 Saver."""
    graph = tf.Graph()
    with graph.as_default():
        variables = {n: tf.compat.v1.Variable(v, name=n.replace("/", "_")) for n, v in tensors.items()}
        saver = tf.compat.v1.train.Saver(variables, write_version=tf.compat.v1.train.SaverDef.V1)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(path), write_meta_graph=False)
    return str(path)


@pytest.fixture(scope="module")
def slim_tensors():
    return random_slim_tensors(np.random.default_rng(1))


@pytest.fixture(scope="module")
def small_model():
    return inception_v1(32)


def test_expected_names_and_shapes_are_the_real_ones():
    shapes = slim_checkpoint_shapes()
    for name, shape in REAL_SHAPES.items():
        assert shapes[name] == shape
    assert "InceptionV1/Mixed_5b/Branch_2/Conv2d_0b_3x3/weights" not in shapes  # slim's 0a naming quirk
    assert len([n for n in shapes if n.endswith("/weights")]) == 57 + 1
    assert not any(n.endswith("/gamma") or (n.endswith("/biases") and "Logits" not in n) for n in shapes)


def test_round_trip_v2_checkpoint(tmp_path, slim_tensors, small_model):
    prefix = write_checkpoint_v2(tmp_path / "model.ckpt", slim_tensors)
    count = load_slim_inception_v1_checkpoint(small_model, prefix)
    assert count == 57 * 4
    conv = small_model.get_layer("Mixed_5b_Branch_2_Conv2d_0a_3x3")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(conv.kernel), slim_tensors["InceptionV1/Mixed_5b/Branch_2/Conv2d_0a_3x3/weights"]
    )
    bn = small_model.get_layer("Mixed_4e_Branch_3_Conv2d_0b_1x1_BatchNorm")
    for part, variable in (("beta", bn.beta), ("moving_mean", bn.moving_mean), ("moving_variance", bn.moving_variance)):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(variable), slim_tensors[f"InceptionV1/Mixed_4e/Branch_3/Conv2d_0b_1x1/BatchNorm/{part}"]
        )


def test_loaded_stem_computes_slim_conv_bn_relu(tmp_path, rng, slim_tensors, small_model):
    """Conv2d_1a_7x7 (SAME, stride 2) → BN(scale=False, eps=1e-3) → ReLU, in numpy from the checkpoint arrays."""
    load_slim_inception_v1_checkpoint(small_model, write_checkpoint_v2(tmp_path / "m.ckpt", slim_tensors))
    import keras

    stem = keras.Model(small_model.input, small_model.get_layer("Conv2d_1a_7x7_relu").output)
    x = rng.normal(size=(1, 32, 32, 3))
    got = ops.convert_to_numpy(stem(x.astype("float32"), training=False))
    w = slim_tensors["InceptionV1/Conv2d_1a_7x7/weights"].astype("float64")
    padded = np.pad(x, ((0, 0), (2, 3), (2, 3), (0, 0)))  # TF SAME: total pad 5 for 32, k7, s2
    conv = np.zeros((1, 16, 16, 64))
    for i in range(16):
        for j in range(16):
            patch = padded[0, 2 * i : 2 * i + 7, 2 * j : 2 * j + 7, :]
            conv[0, i, j] = np.tensordot(patch, w, axes=([0, 1, 2], [0, 1, 2]))
    bn = "InceptionV1/Conv2d_1a_7x7/BatchNorm/"
    want = (conv - slim_tensors[bn + "moving_mean"]) / np.sqrt(slim_tensors[bn + "moving_variance"] + 1e-3)
    want = np.maximum(want + slim_tensors[bn + "beta"], 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_v1_checkpoint_file_and_directory(tmp_path, rng, small_model):
    tensors = {n: v for n, v in random_slim_tensors(rng).items() if n != "global_step"}
    path = write_checkpoint_v1(tmp_path / "inception_v1.ckpt", tensors)
    assert set(read_slim_checkpoint(path)) == set(tensors)
    assert load_slim_inception_v1_checkpoint(small_model, tmp_path) == 57 * 4  # directory holding inception_v1.ckpt
    np.testing.assert_array_equal(
        ops.convert_to_numpy(small_model.get_layer("Conv2d_2b_1x1").kernel), tensors["InceptionV1/Conv2d_2b_1x1/weights"]
    )


def test_missing_variable_is_named(tmp_path, rng, small_model):
    dropped = "InceptionV1/Mixed_4c/Branch_1/Conv2d_0b_3x3/BatchNorm/moving_mean"
    prefix = write_checkpoint_v2(tmp_path / "partial.ckpt", random_slim_tensors(rng, drop=(dropped,)))
    before = ops.convert_to_numpy(small_model.get_layer("Conv2d_1a_7x7").kernel).copy()
    with pytest.raises(ValueError, match="1 Inception v1 variable.*missing") as info:
        load_slim_inception_v1_checkpoint(small_model, prefix)
    assert dropped in str(info.value) and "data_prep.weights" in str(info.value)
    np.testing.assert_array_equal(ops.convert_to_numpy(small_model.get_layer("Conv2d_1a_7x7").kernel), before)


def test_wrong_shape_is_named(tmp_path, rng, small_model):
    tensors = random_slim_tensors(rng)
    tensors["InceptionV1/Mixed_3b/Branch_2/Conv2d_0b_3x3/weights"] = np.zeros((5, 5, 16, 32), "float32")
    prefix = write_checkpoint_v2(tmp_path / "caffe_like.ckpt", tensors)
    with pytest.raises(ValueError, match=r"Mixed_3b/Branch_2/Conv2d_0b_3x3/weights: checkpoint \(5, 5, 16, 32\)"):
        load_slim_inception_v1_checkpoint(small_model, prefix)


def test_missing_file_says_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="python -m data_prep.weights --model inception_v1"):
        load_slim_inception_v1_checkpoint(None, tmp_path / "nowhere.ckpt")
    monkeypatch.setenv("SYMM_KERAS_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="data_prep.weights"):
        build_backbone("inception_v1", weights="imagenet", input_size=32)


def test_imagenet_from_weights_dir(tmp_path, monkeypatch, slim_tensors):
    write_checkpoint_v2(tmp_path / "inception_v1.ckpt", slim_tensors)
    monkeypatch.setenv("SYMM_KERAS_WEIGHTS", str(tmp_path))
    model = build_backbone("inception_v1", weights="imagenet", input_size=32)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model.get_layer("Mixed_3c_Branch_2_Conv2d_0b_3x3").kernel),
        slim_tensors["InceptionV1/Mixed_3c/Branch_2/Conv2d_0b_3x3/weights"],
    )


def test_not_a_checkpoint(tmp_path, small_model):
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        load_slim_inception_v1_checkpoint(small_model, bogus)
