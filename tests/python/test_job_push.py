"""A job's push block, end to end, against a real S3-compatible server (moto on
127.0.0.1 behind the recording fault proxy of s3_fixtures.py) and a local store:
- the output at output_uri is pushed as it is: for s3:// to s3:// every file is
  one server-side copy (no GET of the output's weights, no upload of its bytes),
  the store's manifest is the output's plus the job's name, version, source,
  method and eval metrics, and the journal records the push;
- rerunning the finished job pushes nothing (no PUT at all under the store);
- a job killed after its push reached the index but before the journal
  recorded it, or whose push failed half way, pushes again on rerun and leaves
  one consistent record;
- `shardq pull` of the pushed model verifies and gives the output's bytes; a
  tampered object or manifest is refused naming the file.
Expected digests are computed here with hashlib from the objects themselves."""
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from s3_fixtures import BUCKET, FaultProxy  # noqa: E402
from shardq_testlib import SHARDQ, calibration_text, make_model, mpirun, run, write_spec  # noqa: E402

S3 = f"s3://{BUCKET}"


@pytest.fixture(scope="module")
def proxy(server):
    p = FaultProxy(server.port)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def work(tmp_path_factory, server):
    tmp = tmp_path_factory.mktemp("jobpush")
    model = make_model(tmp / "model", "--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "4",
                       "--kv-heads", "2", "--vocab", "512", "--seed", "3")
    calib = calibration_text(tmp)
    for f in sorted(model.iterdir()):
        server.s3.upload_file(str(f), BUCKET, f"pushmodels/tiny/{f.name}")
    server.s3.upload_file(str(calib), BUCKET, "pushdata/calibration.txt")
    return {"tmp": tmp, "model": model, "calib": calib}


def job_spec(work, name, endpoint, on_s3=True, store=None, version="1"):
    root = f"{S3}/pushjobs/{name}" if on_s3 else str(work["tmp"] / name)
    calib = f"{S3}/pushdata/calibration.txt" if on_s3 else str(work["calib"])
    spec = {
        "name": name,
        "model": f"{S3}/pushmodels/tiny" if on_s3 else str(work["model"]),
        "data": {"calibration": calib, "nsamples": 4, "seqlen": 32},
        "steps": [{"gptq": {"bits": 4, "group_size": 32}},
                  {"eval": {"data": calib, "seqlen": 32, "max_windows": 4}}],
        "state_uri": f"{root}/state",
        "output_uri": f"{root}/output",
        "seed": 1,
        "storage": {"endpoint": endpoint, "region": "us-east-1", "path_style": True, "max_retries": 1},
        "push": {"store": store or f"{S3}/pushstore", "name": name, "version": version},
    }
    return write_spec(work["tmp"] / f"{name}.json", spec)


def job_env(server, tmp, **extra):
    tmpdir = Path(tmp) / "tmpdir"
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = server.env(TMPDIR=str(tmpdir), **extra)
    env.pop("AWS_ENDPOINT_URL")  # the spec's storage block points the job at the server (or the proxy)
    return env, tmpdir


def s3_objects(server, prefix):
    """key (relative to prefix) -> object bytes."""
    pages = server.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {k[len(prefix):]: server.s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def s3_json(server, key):
    return json.loads(server.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def store_writes(seen, store_key):
    return [(m, p) for m, p, _ in seen if m in ("PUT", "POST", "DELETE") and f"/{BUCKET}/{store_key}/" in p]


def check_pushed(server, name, version="1", store_key="pushstore"):
    """The store holds the job's output as it is, with the job's metadata; returns (record, store manifest bytes)."""
    output = s3_objects(server, f"pushjobs/{name}/output/")
    pushed = s3_objects(server, f"{store_key}/{name}/{version}/")
    assert set(pushed) == set(output) and "model.safetensors" in output
    assert all(pushed[k] == output[k] for k in output if k != "manifest.json")
    out_manifest, manifest = json.loads(output["manifest.json"]), json.loads(pushed["manifest.json"])
    for rel, entry in out_manifest["files"].items():  # the output's manifest describes its own bytes
        assert entry == {"sha256": hashlib.sha256(output[rel]).hexdigest(), "size": len(output[rel])}
    assert set(out_manifest["files"]) == set(output) - {"manifest.json"}
    assert manifest["files"] == out_manifest["files"]
    journal = s3_json(server, f"pushjobs/{name}/state/journal.json")
    assert manifest["metrics"] == journal["steps"][1]["result"] and manifest["method"] == "gptq"
    assert (manifest["name"], manifest["version"]) == (name, version)
    assert manifest["source_model"] == f"{S3}/pushmodels/tiny"
    assert manifest["quantization"] == json.loads(output["config.json"])["quantization_config"]
    records = [m for m in s3_json(server, f"{store_key}/index.json")["models"] if m["name"] == name]
    assert len(records) == 1 and records[0]["version"] == version
    digest = hashlib.sha256(pushed["manifest.json"]).hexdigest()
    assert records[0]["manifest_sha256"] == digest and records[0]["metrics"]["ppl"] == manifest["metrics"]["ppl"]
    assert journal["push"] == {"store": f"{S3}/{store_key}", "name": name, "version": version,
                               "uri": f"{S3}/{store_key}/{name}/{version}", "manifest_sha256": digest}
    return records[0], pushed


def test_push_is_server_side_recorded_once_and_pulls_back(server, proxy, work, tmp_path):
    spec = job_spec(work, "once", proxy.endpoint)
    env, tmpdir = job_env(server, tmp_path / "first")
    proxy.clear()
    mpirun(1, ["run", spec], env=env)
    seen, copies = list(proxy.seen), list(proxy.copies)
    _, pushed = check_pushed(server, "once")
    # Every file is one CopyObject from output_uri; only the manifest, entry and index are uploaded.
    files = sorted(k for k in pushed if k != "manifest.json")
    assert sorted(p.rsplit("/", 1)[1] for p, _ in copies) == files
    assert all(src.startswith(f"/{BUCKET}/pushjobs/once/output/") for _, src in copies)
    uploads = {p for m, p in store_writes(seen, "pushstore")} - {p for p, _ in copies}
    assert uploads == {f"/{BUCKET}/pushstore/once/1/manifest.json", f"/{BUCKET}/pushstore/entries/once/1.json",
                       f"/{BUCKET}/pushstore/index.json"}
    assert not [p for m, p, rng in seen if m == "GET" and p.endswith("/output/model.safetensors") and not rng]
    assert list(tmpdir.iterdir()) == []

    # A rerun of the finished job writes nothing to the store.
    before = {o["Key"]: o["ETag"] for o in server.s3.list_objects_v2(Bucket=BUCKET, Prefix="pushstore/")["Contents"]}
    proxy.clear()
    rerun = mpirun(1, ["run", spec], env=env)
    assert store_writes(proxy.seen, "pushstore") == [] and not proxy.copies
    assert "done in the journal" in rerun.stderr
    after = {o["Key"]: o["ETag"] for o in server.s3.list_objects_v2(Bucket=BUCKET, Prefix="pushstore/")["Contents"]}
    assert after == before

    # `shardq pull` verifies and gives the output's bytes; the manifest is the store's.
    pulled = tmp_path / "pulled"
    run([SHARDQ, "pull", f"{S3}/pushstore/once/1", pulled], env=server.env())
    assert {p.relative_to(pulled).as_posix(): p.read_bytes() for p in pulled.rglob("*") if p.is_file()} == pushed

    # The CLI pushes an s3:// checkpoint to a local store too (streamed once through scratch).
    local_store = tmp_path / "local-store"
    run([SHARDQ, "push", f"{S3}/pushjobs/once/output", local_store, "--name", "copy", "--version", "2"],
        env=server.env(TMPDIR=str(tmpdir)))
    output = s3_objects(server, "pushjobs/once/output/")
    assert all((local_store / "copy" / "2" / k).read_bytes() == v for k, v in output.items() if k != "manifest.json")
    assert json.loads((local_store / "index.json").read_text())["models"][0]["name"] == "copy"
    assert list(tmpdir.iterdir()) == []


def test_pull_refuses_a_tampered_push_naming_the_file(server, proxy, work, tmp_path):
    spec = job_spec(work, "tamper", server.endpoint)
    env, _ = job_env(server, tmp_path)
    mpirun(1, ["run", spec], env=env)
    key = "pushstore/tamper/1/model.safetensors"
    data = bytearray(server.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    server.s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
    r = run([SHARDQ, "pull", f"{S3}/pushstore/tamper/1", tmp_path / "bad"], env=server.env(), check=False)
    assert r.returncode == 1 and f"{S3}/{key}: sha256" in r.stderr, r.stderr
    assert not (tmp_path / "bad" / "model.safetensors").exists()
    # A manifest edited to match the tampered bytes' size but not their hash is refused the same way;
    # one edited to list a wrong size names the size.
    manifest = s3_json(server, "pushstore/tamper/1/manifest.json")
    manifest["files"]["config.json"]["size"] += 1
    server.s3.put_object(Bucket=BUCKET, Key="pushstore/tamper/1/manifest.json", Body=json.dumps(manifest).encode())
    r = run([SHARDQ, "pull", f"{S3}/pushstore/tamper/1", tmp_path / "bad2"], env=server.env(), check=False)
    assert r.returncode == 1 and f"{S3}/pushstore/tamper/1/config.json: size" in r.stderr, r.stderr
    assert not (tmp_path / "bad2" / "manifest.json").exists()


def test_killed_before_the_journal_records_the_push_pushes_again(server, proxy, work, tmp_path):
    spec = job_spec(work, "killed", proxy.endpoint)
    env, _ = job_env(server, tmp_path / "killed", SHARDQ_FAULT="before-push-journal:0")
    assert mpirun(1, ["run", spec], env=env, check=False).returncode != 0
    assert "push" not in s3_json(server, "pushjobs/killed/state/journal.json")
    assert [m["name"] for m in s3_json(server, "pushstore/index.json")["models"]].count("killed") == 1
    env, tmpdir = job_env(server, tmp_path / "rerun")
    proxy.clear()
    mpirun(1, ["run", spec], env=env)
    assert store_writes(proxy.seen, "pushstore")  # pushed again...
    check_pushed(server, "killed")  # ...to one consistent record, now in the journal
    assert list(tmpdir.iterdir()) == []


def test_push_failing_half_way_is_redone_on_rerun(server, proxy, work, tmp_path):
    spec = job_spec(work, "halfway", proxy.endpoint)
    env, _ = job_env(server, tmp_path / "failed")
    proxy.clear()
    # Every try (max_retries 1) of the weights' copy fails: the files before it are in the store, no manifest.
    proxy.inject("500", count=2, methods=("PUT",), path_contains="/pushstore/halfway/1/model.safetensors")
    failed = mpirun(1, ["run", spec], env=env, check=False)
    assert failed.returncode != 0 and f"{S3}/pushstore/halfway/1/model.safetensors" in failed.stderr
    assert proxy.injected == ["500", "500"]
    assert "config.json" in s3_objects(server, "pushstore/halfway/1/")
    assert "manifest.json" not in s3_objects(server, "pushstore/halfway/1/")
    assert "halfway" not in [m["name"] for m in s3_json(server, "pushstore/index.json")["models"]]
    assert "push" not in s3_json(server, "pushjobs/halfway/state/journal.json")
    env, tmpdir = job_env(server, tmp_path / "rerun")
    rerun = mpirun(1, ["run", spec], env=env)
    assert "step 0 gptq: done in the journal, skipped" in rerun.stderr
    check_pushed(server, "halfway")
    assert list(tmpdir.iterdir()) == []


def test_local_job_pushes_to_a_local_store_once(server, work, tmp_path):
    store = tmp_path / "store"
    spec = job_spec(work, "local", server.endpoint, on_s3=False, store=str(store))
    env, tmpdir = job_env(server, tmp_path)
    mpirun(1, ["run", spec], env=env)
    output = work["tmp"] / "local" / "output"
    pushed = store / "local" / "1"
    assert sorted(p.name for p in pushed.iterdir()) == sorted(p.name for p in output.iterdir())
    for p in output.iterdir():
        if p.name != "manifest.json":
            assert (pushed / p.name).read_bytes() == p.read_bytes()
    manifest = json.loads((pushed / "manifest.json").read_text())
    assert manifest["files"] == json.loads((output / "manifest.json").read_text())["files"]
    journal = json.loads((work["tmp"] / "local" / "state" / "journal.json").read_text())
    assert journal["push"]["manifest_sha256"] == hashlib.sha256((pushed / "manifest.json").read_bytes()).hexdigest()
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}
    mpirun(1, ["run", spec], env=env)
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()} == stamps
    run([SHARDQ, "pull", str(pushed), tmp_path / "pulled"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "pulled").iterdir()} == \
        {p.name: p.read_bytes() for p in pushed.iterdir()}
    assert list(tmpdir.iterdir()) == []
