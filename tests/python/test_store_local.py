"""test_store_local.py: the storage API on local paths and file:// URIs (through store_tool):
the same verbs as on S3, atomic writes, and errors that name the path."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from s3_fixtures import STORE_TOOL  # noqa: E402


def tool(*args, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    r = subprocess.run([STORE_TOOL, *args], env=env, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"store_tool {args} failed: {r.stderr}")
    return r


def test_local_verbs(tmp_path):
    data = bytes(range(256)) * 10
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    root = tmp_path / "store"
    tool("put", str(root / "a" / "x.bin"), str(src))
    tool("putfile", f"file://{root}/b/y.bin", str(src))
    assert (root / "a" / "x.bin").read_bytes() == data and (root / "b" / "y.bin").read_bytes() == data
    assert [p for p in os.listdir(root / "a") if ".tmp." in p] == []
    tool("range", f"file://{root}/a/x.bin", "300", "50", str(tmp_path / "r"))
    assert (tmp_path / "r").read_bytes() == data[300:350]
    tool("getfile", str(root / "b" / "y.bin"), str(tmp_path / "copy" / "y.bin"))
    assert (tmp_path / "copy" / "y.bin").read_bytes() == data
    assert tool("head", str(root / "a" / "x.bin")).stdout.split() == [str(len(data)), "-", "-"]
    assert tool("list", f"file://{root}").stdout.splitlines() == [f"{len(data)} a/x.bin", f"{len(data)} b/y.bin"]
    tool("delete", str(root / "a" / "x.bin"))
    tool("delete", str(root / "a" / "x.bin"))
    r = tool("head", str(root / "a" / "x.bin"), check=False)
    assert r.returncode == 1 and str(root / "a" / "x.bin") in r.stderr
    r = tool("range", str(root / "b" / "y.bin"), str(len(data) - 10), "20", str(tmp_path / "r2"), check=False)
    assert r.returncode == 1 and "y.bin" in r.stderr
    assert tool("list", str(tmp_path / "absent")).stdout == ""


def test_bad_uris_are_named(tmp_path):
    r = tool("get", "gs://bucket/key", str(tmp_path / "o"), check=False)
    assert r.returncode == 1 and "gs://bucket/key" in r.stderr
    r = tool("get", "s3://UPPER/key", str(tmp_path / "o"), check=False)
    assert r.returncode == 1 and "s3://UPPER/key" in r.stderr
