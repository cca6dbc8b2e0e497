"""st_numpy_reader.py: an independent safetensors reader and writer for the tests, written from
the format description (8-byte little-endian header length, JSON header, data buffer) with only
struct, json and numpy. It shares no code with shardq's C implementation."""
import json
import os
import struct

import numpy as np

# safetensors dtype name -> (numpy dtype, bytes per element). BF16 has no numpy type: it is kept
# as uint16 bit patterns and widened by bf16_to_f32.
DTYPES = {
    "F64": (np.float64, 8), "F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2),
    "I64": (np.int64, 8), "I32": (np.int32, 4), "I16": (np.int16, 2), "I8": (np.int8, 1),
    "U8": (np.uint8, 1), "BOOL": (np.bool_, 1),
}


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read(path):
    """Returns (header dict, {name: numpy array}), checking the layout rules on the way."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert 8 + n <= len(blob), "header longer than file"
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    tensors = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            assert all(isinstance(v, str) for v in entry.values())
            continue
        np_dtype, size = DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        shape = entry["shape"]
        assert end - begin == int(np.prod(shape, dtype=np.int64)) * size, name
        assert 0 <= begin <= end <= len(data), name
        spans.append((begin, end))
        tensors[name] = np.frombuffer(data[begin:end], dtype=np.dtype(np_dtype).newbyteorder("<")).reshape(shape)
    spans.sort()
    for (b0, e0), (b1, _) in zip(spans, spans[1:]):
        assert e0 <= b1, "overlapping tensors"
    return header, tensors


def write(path, tensors, metadata=None):
    """Writes {name: (dtype name, numpy array)} in sorted-name order, header padded to 8 bytes."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    chunks = []
    offset = 0
    for name in sorted(tensors):
        dtype, array = tensors[name]
        raw = np.ascontiguousarray(array).astype(np.dtype(DTYPES[dtype][0]).newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def repo_root():
    return os.environ.get("SHARDQ_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
