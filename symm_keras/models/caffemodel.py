"""Read the parameter blobs of a Caffe ``.caffemodel`` without Caffe or protobuf.

A ``.caffemodel`` is a serialised ``caffe.NetParameter`` (``caffe.proto``).
Only the fields that hold weights are decoded, straight from the protobuf wire
format (varint keys, length-delimited sub-messages)::

    NetParameter:     layer = 100 (LayerParameter)   | layers = 2 (V1LayerParameter, pre-2015 files)
    LayerParameter:   name = 1, blobs = 7            | V1LayerParameter: name = 4, blobs = 6
    BlobProto:        shape = 7 (BlobShape: dim = 1, packed int64),
                      data = 5 (packed float32), double_data = 8 (packed float64),
                      legacy num = 1, channels = 2, height = 3, width = 4

``read_caffemodel(path)`` returns ``{layer name: [blob arrays]}`` (weights
then bias for convolutions), e.g. ``bvlc_googlenet.caffemodel`` →
``{"conv1/7x7_s2": [(64, 3, 7, 7), (64,)], ...}``;
``caffemodel_to_npz`` writes the ``.npz`` layout ``caffe_weights`` reads.
"""

import numpy as np

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(buf, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint in .caffemodel")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf):
    """Yield ``(field number, wire type, value)``; ``value`` is an int or a memoryview slice."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _FIXED64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == _BYTES:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == _FIXED32:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (not a .caffemodel?)")
        if pos > end:
            raise ValueError("truncated field in .caffemodel")
        yield number, wire, value


def _packed_varints(buf):
    values, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        values.append(value)
    return values


def _blob(buf):
    dims, legacy, floats, doubles = [], {}, [], []
    for number, wire, value in _fields(buf):
        if number == 7 and wire == _BYTES:  # BlobShape
            for dim_number, dim_wire, dim in _fields(value):
                if dim_number == 1:
                    dims += _packed_varints(dim) if dim_wire == _BYTES else [dim]
        elif number == 5:  # data (float32)
            floats.append(np.frombuffer(value, dtype="<f4"))
        elif number == 8:  # double_data
            doubles.append(np.frombuffer(value, dtype="<f8"))
        elif number in (1, 2, 3, 4) and wire == _VARINT:
            legacy[number] = value
    data = np.concatenate(floats) if floats else (np.concatenate(doubles) if doubles else np.zeros(0, "float32"))
    if not dims and legacy:  # pre-2015 blobs: (num, channels, height, width); biases are (1, 1, 1, n)
        dims = [legacy.get(i, 0) for i in (1, 2, 3, 4)]
    if int(np.prod(dims)) != data.size:
        raise ValueError(f"blob shape {dims} does not match its {data.size} values")
    return data.reshape(dims)


def read_caffemodel(path):
    """``{layer name: [np.ndarray blobs]}`` of every layer with parameters in a ``.caffemodel``."""
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    layers = {}
    for number, wire, value in _fields(buf):
        if wire != _BYTES or number not in (100, 2):
            continue
        name_field, blob_field = (1, 7) if number == 100 else (4, 6)
        name, blobs = None, []
        for field, field_wire, field_value in _fields(value):
            if field == name_field and field_wire == _BYTES:
                name = bytes(field_value).decode("utf-8")
            elif field == blob_field and field_wire == _BYTES:
                blobs.append(_blob(field_value))
        if name is not None and blobs:
            layers[name] = blobs
    if not layers:
        raise ValueError(f"{path}: no layers with parameters found (not a .caffemodel?)")
    return layers


def caffemodel_to_npz(caffemodel_path, npz_path):
    """Write ``"<layer>/weights"`` and ``"<layer>/biases"`` arrays of every layer to ``npz_path``."""
    arrays = {}
    for name, blobs in read_caffemodel(caffemodel_path).items():
        arrays[f"{name}/weights"] = blobs[0].astype("float32")
        if len(blobs) > 1:
            arrays[f"{name}/biases"] = blobs[1].reshape(-1).astype("float32")
    np.savez(npz_path, **arrays)
    return npz_path
