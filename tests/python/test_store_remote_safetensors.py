"""test_store_remote_safetensors.py: tensors read straight from s3:// by ranged GETs.

The safetensors file is written here by hand from the format description
(8-byte little-endian header length, JSON header, data buffer); the proxy in
front of moto records every request, so the test checks that only the header
and the requested tensor's bytes were fetched."""
import hashlib
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from s3_fixtures import BUCKET, ROOT, FaultProxy, MotoServer  # noqa: E402

TOOL = os.path.join(ROOT, "build", "tools", "remote_st_tool")
MAKE_TINY = os.path.join(ROOT, "build", "tools", "make_tiny_model")
SHARDQ = os.path.join(ROOT, "shardq")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MotoServer(str(tmp_path_factory.mktemp("moto")))
    srv.proxy = FaultProxy(srv.port)
    yield srv
    srv.proxy.stop()
    srv.stop()


def safetensors_bytes(tensors):
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        raw = arr.tobytes()
        header[name] = {"dtype": {np.float32: "F32", np.float16: "F16", np.int32: "I32"}[arr.dtype.type],
                        "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs), 8 + len(text)


def test_only_the_needed_tensor_is_fetched(server, tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"model.embed_tokens.weight": rng.standard_normal((256, 64)).astype(np.float32),
               "model.layers.0.mlp.up_proj.weight": rng.standard_normal((128, 64)).astype(np.float16),
               "model.layers.1.self_attn.q_proj.weight": rng.standard_normal((64, 64)).astype(np.float32)}
    blob, data_start = safetensors_bytes(tensors)
    server.s3.put_object(Bucket=BUCKET, Key="st/model.safetensors", Body=blob)
    env = server.env(endpoint=server.proxy.endpoint)
    uri = f"s3://{BUCKET}/st/model.safetensors"
    server.proxy.clear()
    name = "model.layers.0.mlp.up_proj.weight"
    subprocess.run([TOOL, uri, name, str(tmp_path / "t.bin")], env=env, check=True, timeout=60)
    got = np.frombuffer((tmp_path / "t.bin").read_bytes(), dtype=np.float16).reshape(128, 64)
    assert np.array_equal(got, tensors[name])
    begin = data_start + tensors["model.embed_tokens.weight"].nbytes
    end = begin + tensors[name].nbytes - 1
    assert [(m, r) for m, _, r in server.proxy.seen] == [
        ("HEAD", None), ("GET", "bytes=0-7"), ("GET", f"bytes=8-{data_start - 1}"), ("GET", f"bytes={begin}-{end}")]


def test_bad_header_length_is_a_format_error(server, tmp_path):
    server.s3.put_object(Bucket=BUCKET, Key="st/bad.safetensors", Body=struct.pack("<Q", 10 ** 9) + b"{}")
    r = subprocess.run([TOOL, f"s3://{BUCKET}/st/bad.safetensors"], env=server.env(), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "header length" in r.stderr and "st/bad.safetensors" in r.stderr


def test_tiny_model_pushed_to_s3_reads_back_tensor_by_tensor(server, tmp_path):
    # A sharded tiny Llama goes through `shardq push`; each tensor read straight from the
    # s3:// shard equals the bytes at its offsets in the local shard.
    model = tmp_path / "tiny"
    subprocess.run([MAKE_TINY, str(model), "--layers", "2", "--hidden", "64", "--shards", "2"], check=True,
                   timeout=60)
    files = {p.name: p.read_bytes() for p in model.iterdir()}
    manifest = {"format": "shardq-manifest/1", "name": "tiny", "version": "1", "method": "none",
                "files": {n: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in files.items()}}
    (model / "manifest.json").write_text(json.dumps(manifest))
    env = server.env()
    subprocess.run([SHARDQ, "push", str(model), f"s3://{BUCKET}/zoo"], env=env, check=True, timeout=60,
                   capture_output=True)
    weight_map = json.loads(files["model.safetensors.index.json"])["weight_map"]
    checked = 0
    for name, shard in sorted(weight_map.items())[:6]:
        blob = files[shard]
        n = struct.unpack("<Q", blob[:8])[0]
        begin, end = json.loads(blob[8:8 + n])[name]["data_offsets"]
        out = tmp_path / "t.bin"
        subprocess.run([TOOL, f"s3://{BUCKET}/zoo/tiny/1/{shard}", name, str(out)], env=env, check=True, timeout=60)
        assert out.read_bytes() == blob[8 + n + begin:8 + n + end]
        checked += 1
    assert checked == 6
