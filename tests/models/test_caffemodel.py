""".caffemodel decoding, on files serialised by the protobuf library from caffe.proto's field numbers."""

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from keras import ops

from symm_keras.models.caffe_weights import load_caffe_googlenet_weights, read_caffe_googlenet_weights
from symm_keras.models.caffemodel import caffemodel_to_npz, read_caffemodel
from symm_keras.models.googlenet_caffe import caffe_conv_shapes, googlenet_caffe

F = descriptor_pb2.FieldDescriptorProto


def _caffe_messages():
    """The weight-carrying subset of caffe.proto (same field numbers and packing)."""
    file = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")

    def message(name, fields):
        msg = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name, packed in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
            if packed:
                field.options.packed = True

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BlobShape", [("dim", 1, F.TYPE_INT64, rep, None, True)])
    message("BlobProto", [
        ("num", 1, F.TYPE_INT32, opt, None, False), ("channels", 2, F.TYPE_INT32, opt, None, False),
        ("height", 3, F.TYPE_INT32, opt, None, False), ("width", 4, F.TYPE_INT32, opt, None, False),
        ("data", 5, F.TYPE_FLOAT, rep, None, True), ("diff", 6, F.TYPE_FLOAT, rep, None, True),
        ("shape", 7, F.TYPE_MESSAGE, opt, ".caffe.BlobShape", False),
        ("double_data", 8, F.TYPE_DOUBLE, rep, None, True),
    ])
    message("LayerParameter", [
        ("name", 1, F.TYPE_STRING, opt, None, False), ("type", 2, F.TYPE_STRING, opt, None, False),
        ("bottom", 3, F.TYPE_STRING, rep, None, False), ("top", 4, F.TYPE_STRING, rep, None, False),
        ("blobs", 7, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False),
    ])
    message("V1LayerParameter", [
        ("bottom", 2, F.TYPE_STRING, rep, None, False), ("top", 3, F.TYPE_STRING, rep, None, False),
        ("name", 4, F.TYPE_STRING, opt, None, False), ("type", 5, F.TYPE_INT32, opt, None, False),
        ("blobs", 6, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False),
    ])
    message("NetParameter", [
        ("name", 1, F.TYPE_STRING, opt, None, False),
        ("layers", 2, F.TYPE_MESSAGE, rep, ".caffe.V1LayerParameter", False),
        ("layer", 100, F.TYPE_MESSAGE, rep, ".caffe.LayerParameter", False),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


NetParameter = _caffe_messages()


def googlenet_blobs(rng):
    blobs = {}
    for layer, shape in caffe_conv_shapes().items():
        blobs[layer] = [(rng.normal(size=shape) * 0.05).astype("float32"), rng.normal(size=shape[:1]).astype("float32")]
    blobs["loss3/classifier"] = [np.zeros((1000, 1024), "float32"), np.zeros(1000, "float32")]
    return blobs


def write_caffemodel(path, blobs, legacy=False):
    net = NetParameter(name="GoogleNet")
    for name, arrays in blobs.items():
        layer = net.layers.add(name=name, type=4) if legacy else net.layer.add(name=name, type="Convolution")
        for array in arrays:
            blob = layer.blobs.add()
            if legacy:  # pre-2015: 4-D num/channels/height/width, biases (1, 1, 1, n)
                dims = list(array.shape) if array.ndim == 4 else [1, 1, 1][: 4 - array.ndim] + list(array.shape)
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.reshape(-1).tolist())
    net.layer.add(name="pool5/7x7_s1", type="Pooling").bottom.append("inception_5b/output")
    path.write_bytes(net.SerializeToString())
    return path


@pytest.fixture(scope="module")
def blobs():
    return googlenet_blobs(np.random.default_rng(5))


@pytest.mark.parametrize("legacy", [False, True])
def test_read_caffemodel(tmp_path, blobs, legacy):
    path = write_caffemodel(tmp_path / "net.caffemodel", blobs, legacy=legacy)
    layers = read_caffemodel(path)
    assert set(layers) == set(blobs)  # the parameter-free pooling layer is skipped
    np.testing.assert_array_equal(layers["inception_4e/5x5"][0], blobs["inception_4e/5x5"][0])
    bias = layers["conv1/7x7_s2"][1]
    assert bias.shape == ((1, 1, 1, 64) if legacy else (64,))
    np.testing.assert_array_equal(bias.reshape(-1), blobs["conv1/7x7_s2"][1])


def test_load_caffemodel_into_googlenet(tmp_path, blobs):
    path = write_caffemodel(tmp_path / "bvlc_googlenet.caffemodel", blobs, legacy=True)
    model = googlenet_caffe(64)
    assert load_caffe_googlenet_weights(model, path) == 57
    kernel = ops.convert_to_numpy(model.get_layer("inception_3a_3x3").kernel)
    np.testing.assert_array_equal(kernel, np.transpose(blobs["inception_3a/3x3"][0], (2, 3, 1, 0)))
    npz = caffemodel_to_npz(path, tmp_path / "bvlc_googlenet.npz")
    weights = read_caffe_googlenet_weights(npz)
    np.testing.assert_array_equal(weights["inception_5b/pool_proj"][1], blobs["inception_5b/pool_proj"][1])


def test_double_data_and_bad_files(tmp_path):
    net = NetParameter()
    blob = net.layer.add(name="fc").blobs.add()
    blob.shape.dim.extend([2, 2])
    blob.double_data.extend([1.0, 2.0, 3.0, 4.0])
    (tmp_path / "d.caffemodel").write_bytes(net.SerializeToString())
    np.testing.assert_array_equal(read_caffemodel(tmp_path / "d.caffemodel")["fc"][0], [[1, 2], [3, 4]])
    (tmp_path / "empty.caffemodel").write_bytes(NetParameter(name="x").SerializeToString())
    with pytest.raises(ValueError, match="no layers with parameters"):
        read_caffemodel(tmp_path / "empty.caffemodel")
    (tmp_path / "junk.caffemodel").write_bytes(b"\x0f\xff\xff")
    with pytest.raises(ValueError, match="wire type|truncated"):
        read_caffemodel(tmp_path / "junk.caffemodel")
    blob.shape.dim[:] = [3, 2]
    (tmp_path / "mismatch.caffemodel").write_bytes(net.SerializeToString())
    with pytest.raises(ValueError, match=r"blob shape \[3, 2\] does not match its 4 values"):
        read_caffemodel(tmp_path / "mismatch.caffemodel")


def test_imagenet_finds_caffemodel_in_weights_dir(tmp_path, blobs, monkeypatch):
    from symm_keras.models.registry import build_backbone

    write_caffemodel(tmp_path / "bvlc_googlenet.caffemodel", blobs)
    monkeypatch.setenv("SYMM_KERAS_WEIGHTS", str(tmp_path))
    backbone = build_backbone("googlenet_caffe", weights="imagenet", input_size=64)
    np.testing.assert_array_equal(ops.convert_to_numpy(backbone.get_layer("conv2_3x3").bias), blobs["conv2/3x3"][1])
