"""test_safetensors_interop.py: shardq's safetensors reader and writer agree with an independent
implementation (st_numpy_reader: struct + json + numpy, written from the format description).

A file written on the Python side with every dtype is read by shardq (build/tools/st_copy reads it
and writes it back with shardq's writer; `shardq inspect` lists it), and the file shardq writes is
read back on the Python side: same tensors, bytes, shapes and metadata, header padded with spaces
to a multiple of 8, tensors laid out contiguously in order."""
import json
import os
import struct
import subprocess

import numpy as np

import st_numpy_reader as st

ROOT = st.repo_root()
ST_COPY = os.path.join(ROOT, "build", "tools", "st_copy")
SHARDQ = os.path.join(ROOT, "shardq")


def every_dtype():
    rng = np.random.default_rng(0)
    return {
        "f64": ("F64", rng.standard_normal((3, 5))),
        "f32": ("F32", rng.standard_normal((4, 2, 3)).astype(np.float32)),
        "f16": ("F16", rng.standard_normal(7).astype(np.float16)),
        "bf16": ("BF16", rng.integers(0, 1 << 16, (2, 9), dtype=np.uint16)),
        "i64": ("I64", rng.integers(-(1 << 62), 1 << 62, (5,), dtype=np.int64)),
        "i32": ("I32", rng.integers(-(1 << 30), 1 << 30, (2, 2), dtype=np.int32)),
        "i16": ("I16", rng.integers(-30000, 30000, (3,), dtype=np.int16)),
        "i8": ("I8", rng.integers(-128, 128, (11,), dtype=np.int8)),
        "u8": ("U8", rng.integers(0, 256, (1, 13), dtype=np.uint8)),
        "bool": ("BOOL", rng.integers(0, 2, (6,)).astype(np.bool_)),
        "scalar": ("F32", np.array(2.5, dtype=np.float32)),
        "empty": ("F32", np.zeros((0, 4), dtype=np.float32)),
    }


def test_python_file_through_shardq_and_back(tmp_path):
    src, dst = tmp_path / "py.safetensors", tmp_path / "sq.safetensors"
    tensors = every_dtype()
    meta = {"format": "pt", "source": "numpy"}
    st.write(src, tensors, meta)
    subprocess.run([ST_COPY, str(src), str(dst)], check=True)

    header, back = st.read(dst)
    assert header["__metadata__"] == meta
    assert set(back) == set(tensors)
    for name, (dtype, array) in tensors.items():
        assert header[name]["dtype"] == dtype
        assert header[name]["shape"] == list(array.shape)
        np.testing.assert_array_equal(back[name], array.astype(back[name].dtype))

    raw = dst.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    text = raw[8:8 + n].decode("utf-8")
    stripped = text.rstrip(" ")
    assert stripped.endswith("}") and len(text) - len(stripped) < 8  # only the padding follows the JSON
    json.loads(stripped)
    # Contiguous layout in the order shardq read them (by offset, i.e. the python writer's order).
    spans = sorted(tuple(e["data_offsets"]) for k, e in header.items() if k != "__metadata__")
    assert spans[0][0] == 0
    for (_, end), (begin, _) in zip(spans, spans[1:]):
        assert end == begin
    assert 8 + n + spans[-1][1] == len(raw)


def test_shardq_inspect_reads_python_file(tmp_path):
    path = tmp_path / "py.safetensors"
    st.write(path, every_dtype())
    out = subprocess.run([SHARDQ, "inspect", str(path)], check=True, capture_output=True, text=True).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if not line.startswith(("tensor ", "total"))}
    assert rows["f32"][1] == "F32" and " ".join(rows["f32"][2:5]) == "[4, 2, 3]"
    assert rows["bf16"][1] == "BF16" and rows["bf16"][-1] == str(2 * 9 * 2)
    assert rows["scalar"][2] == "[]" and rows["empty"][-1] == "0"
    total_bytes = sum(a.astype(np.dtype(st.DTYPES[d][0])).nbytes for d, a in every_dtype().values())
    assert f"total: 12 tensors" in out and out.strip().endswith(f"{total_bytes} bytes")


def test_shardq_rejects_python_file_with_overlap(tmp_path):
    path = tmp_path / "bad.safetensors"
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(12))
    r = subprocess.run([SHARDQ, "inspect", str(path)], capture_output=True, text=True)
    assert r.returncode != 0
    assert str(path) in r.stderr and 'tensor "b" overlaps tensor "a"' in r.stderr
