"""test_model_store.py: `shardq push / pull / models` against a real S3-compatible
server (moto, signatures checked) and a local directory store.

The checkpoint's manifest is written here with hashlib, independently of shardq;
what the store holds is read back with boto3."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from s3_fixtures import BUCKET, SHARDQ  # noqa: E402


def make_checkpoint(path, seed, name=None, version=None, method="gptq"):
    path.mkdir(parents=True)
    files = {
        "config.json": json.dumps({"hidden_size": 64, "seed": seed}).encode(),
        "model.safetensors": hashlib.sha256(str(seed).encode()).digest() * 4000,
        "tokenizer/tokenizer.json": b'{"model": {"type": "BPE"}}',
    }
    manifest = {"format": "shardq-manifest/1", "files": {}, "method": method, "source_model": "llama-tiny",
                "metrics": {"wikitext2_ppl": 12.5}}
    if name:
        manifest["name"], manifest["version"] = name, version
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
        manifest["files"][rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return files


def shardq(env, *args, check=True):
    r = subprocess.run([SHARDQ, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"shardq {args} failed: {r.stderr}")
    return r


def test_push_pull_models_round_trip_on_s3(server, tmp_path):
    files = make_checkpoint(tmp_path / "ckpt", 1, "tiny-w4", "1")
    env = server.env()
    store = f"s3://{BUCKET}/models"
    r = shardq(env, "push", str(tmp_path / "ckpt"), store)
    assert f"{store}/tiny-w4/1" in r.stdout
    for rel, data in files.items():
        assert server.s3.get_object(Bucket=BUCKET, Key=f"models/tiny-w4/1/{rel}")["Body"].read() == data
    index = json.loads(server.s3.get_object(Bucket=BUCKET, Key="models/index.json")["Body"].read())
    [record] = index["models"]
    assert (record["name"], record["version"], record["method"], record["source_model"]) == \
        ("tiny-w4", "1", "gptq", "llama-tiny")
    assert record["metrics"] == {"wikitext2_ppl": 12.5} and record["uri"] == "tiny-w4/1"
    assert record["created"].endswith("Z") and record["files"] == 3
    assert "no models" in shardq(env, "models", f"s3://{BUCKET}/no-store-here").stdout
    out = shardq(env, "models", store).stdout
    assert "tiny-w4" in out and "gptq" in out and record["created"] in out
    shardq(env, "pull", f"{store}/tiny-w4/1", str(tmp_path / "pulled"))
    for rel, data in files.items():
        assert (tmp_path / "pulled" / rel).read_bytes() == data
    # The store's manifest is the checkpoint's plus `created`; the pull keeps it byte for byte.
    stored = server.s3.get_object(Bucket=BUCKET, Key="models/tiny-w4/1/manifest.json")["Body"].read()
    assert (tmp_path / "pulled" / "manifest.json").read_bytes() == stored
    source = json.loads((tmp_path / "ckpt" / "manifest.json").read_text())
    assert {k: v for k, v in json.loads(stored).items() if k != "created"} == source
    assert json.loads(stored)["created"] == record["created"]
    assert record["manifest_sha256"] == hashlib.sha256(stored).hexdigest()


def test_corrupted_object_is_detected_on_pull(server, tmp_path):
    make_checkpoint(tmp_path / "ckpt", 2, "corrupt-me", "1")
    env = server.env()
    store = f"s3://{BUCKET}/models"
    shardq(env, "push", str(tmp_path / "ckpt"), store)
    bad = bytearray(server.s3.get_object(Bucket=BUCKET, Key="models/corrupt-me/1/model.safetensors")["Body"].read())
    bad[100] ^= 1
    server.s3.put_object(Bucket=BUCKET, Key="models/corrupt-me/1/model.safetensors", Body=bytes(bad))
    r = shardq(env, "pull", f"{store}/corrupt-me/1", str(tmp_path / "pulled"), check=False)
    assert r.returncode == 1
    assert "sha256" in r.stderr and f"{store}/corrupt-me/1/model.safetensors" in r.stderr
    assert not (tmp_path / "pulled" / "model.safetensors").exists()
    assert not (tmp_path / "pulled" / "manifest.json").exists()


def tamper_manifest(server, key, change):
    manifest = json.loads(server.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    change(manifest)
    server.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())


@pytest.mark.parametrize("change, message", [
    (lambda m: m["files"]["config.json"].update(size=m["files"]["config.json"]["size"] + 1),
     "config.json: size"),
    (lambda m: m["files"]["config.json"].update(sha256="0" * 64), "config.json: sha256"),
    (lambda m: m["files"]["config.json"].update(sha256="not-hex"), 'files["config.json"].sha256'),
    (lambda m: m["files"]["tokenizer/tokenizer.json"].pop("size"), 'files["tokenizer/tokenizer.json"].size'),
    (lambda m: m["files"].update({"../escape": m["files"]["config.json"]}), 'files["../escape"]'),
    (lambda m: m.update(files=[dict(path=k, **v) for k, v in m["files"].items()]), "files: must be"),
    (lambda m: m.update(format="shardq-manifest/0"), "format: must be"),
    (lambda m: m.update(metrcs={}), "metrcs: unknown field"),
    (lambda m: m.update(created="yesterday"), "created: must be"),
])
def test_pull_refuses_a_tampered_manifest_naming_the_fault(server, tmp_path, change, message):
    make_checkpoint(tmp_path / "ckpt", 5, "tamper", "1")
    env = server.env()
    store = f"s3://{BUCKET}/tampered"
    # --force: the case before left a tampered copy, a different checkpoint, at tamper/1
    shardq(env, "push", str(tmp_path / "ckpt"), store, "--force")
    tamper_manifest(server, "tampered/tamper/1/manifest.json", change)
    r = shardq(env, "pull", f"{store}/tamper/1", str(tmp_path / "pulled"), check=False)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert f"{store}/tamper/1/" in r.stderr  # the manifest or the file at fault, by URI
    assert not (tmp_path / "pulled" / "manifest.json").exists()
    assert not (tmp_path / "pulled" / "config.json").exists()


def test_push_refuses_a_checkpoint_that_does_not_match_its_manifest(server, tmp_path):
    make_checkpoint(tmp_path / "ckpt", 3, "mismatch", "1")
    (tmp_path / "ckpt" / "config.json").write_text('{"hidden_size": 65}')
    r = shardq(server.env(), "push", str(tmp_path / "ckpt"), f"s3://{BUCKET}/models", check=False)
    assert r.returncode == 1 and "config.json" in r.stderr and "manifest" in r.stderr
    assert "Contents" not in server.s3.list_objects_v2(Bucket=BUCKET, Prefix="models/mismatch")


def test_concurrent_pushes_are_all_recorded(server, tmp_path):
    env = server.env()
    store = f"s3://{BUCKET}/race"
    procs = []
    for i in range(4):
        make_checkpoint(tmp_path / f"c{i}", 10 + i)
        procs.append(subprocess.Popen([SHARDQ, "push", str(tmp_path / f"c{i}"), store, "--name", f"m{i}",
                                       "--version", "2"], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    index = json.loads(server.s3.get_object(Bucket=BUCKET, Key="race/index.json")["Body"].read())
    assert sorted((m["name"], m["version"]) for m in index["models"]) == [(f"m{i}", "2") for i in range(4)]
    # A writer that lost the race may leave a stale index; the next push repairs it from the entries.
    stale = dict(index, models=index["models"][:1])
    server.s3.put_object(Bucket=BUCKET, Key="race/index.json", Body=json.dumps(stale).encode())
    make_checkpoint(tmp_path / "c4", 14)
    shardq(env, "push", str(tmp_path / "c4"), store, "--name", "m4", "--version", "2")
    index = json.loads(server.s3.get_object(Bucket=BUCKET, Key="race/index.json")["Body"].read())
    assert sorted(m["name"] for m in index["models"]) == [f"m{i}" for i in range(5)]


def test_local_store_round_trip(tmp_path):
    files = make_checkpoint(tmp_path / "ckpt", 4, "local-m", "3")
    env = dict(os.environ)
    store = f"file://{tmp_path}/store"
    shardq(env, "push", str(tmp_path / "ckpt"), store)
    shardq(env, "push", str(tmp_path / "ckpt"), str(tmp_path / "store"), "--version", "4")
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    assert [(m["name"], m["version"]) for m in index["models"]] == [("local-m", "3"), ("local-m", "4")]
    shardq(env, "pull", f"{store}/local-m/4", str(tmp_path / "pulled"))
    for rel, data in files.items():
        assert (tmp_path / "pulled" / rel).read_bytes() == data
    out = shardq(env, "models", store).stdout.splitlines()
    assert len(out) == 3 and out[1].split()[:3] == ["local-m", "3", "gptq"]
    (tmp_path / "empty").mkdir()
    assert "no models" in shardq(env, "models", str(tmp_path / "empty")).stdout
