"""Calibration jobs on object storage, end to end, against a real S3-compatible
server (moto on 127.0.0.1, SigV4 signatures checked):
- a gptq + eval job (mpirun -np 2) that reads its model, calibration and eval
  text from s3:// and keeps its state and output on s3:// produces the same
  bytes (sha256 of every output file) as the same job on local paths, reads the
  model's weights only by ranged GETs, and leaves no scratch directory behind;
- killed mid-way and rerun, it resumes from the journal in the bucket to the
  same bytes; a corrupted artifact object is detected and its layer redone;
- its push block records the output, with the eval metrics, in the model
  store's index.json;
- a bad bucket or bad credentials fail with a message naming the URI and
  without the secret key."""
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from s3_fixtures import BUCKET, FaultProxy  # noqa: E402
from shardq_testlib import SHARDQ, calibration_text, make_model, mpirun, run, write_spec  # noqa: E402

LAYERS = 3


@pytest.fixture(scope="module")
def work(tmp_path_factory, server):
    tmp = tmp_path_factory.mktemp("s3job")
    model = make_model(tmp / "model", "--layers", str(LAYERS), "--hidden", "64", "--intermediate", "128",
                       "--heads", "4", "--kv-heads", "2", "--vocab", "512", "--seed", "5")
    calib = calibration_text(tmp)
    evaluation = calib.parent / "test.txt" if (calib.parent / "test.txt").exists() else calib
    for f in sorted(model.iterdir()):
        server.s3.upload_file(str(f), BUCKET, f"models/tiny/{f.name}")
    server.s3.upload_file(str(calib), BUCKET, "data/calibration.txt")
    server.s3.upload_file(str(evaluation), BUCKET, "data/eval.txt")
    return {"tmp": tmp, "model": model, "calib": calib, "eval": evaluation}


def job_env(server, tmp, endpoint_in_spec=True, **extra):
    """Credentials from the environment; TMPDIR private to this run (scratch dirs land there)."""
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = server.env(TMPDIR=str(tmpdir), **extra)
    if endpoint_in_spec:  # the spec's storage block is what points the job at the server
        env.pop("AWS_ENDPOINT_URL")
    return env, tmpdir


def spec_for(server, work, name, on_s3, endpoint=None, push=False):
    s3 = f"s3://{BUCKET}"
    spec = {
        "name": name,
        "model": f"{s3}/models/tiny" if on_s3 else str(work["model"]),
        "data": {"calibration": f"{s3}/data/calibration.txt" if on_s3 else str(work["calib"]),
                 "nsamples": 8, "seqlen": 32},
        "steps": [{"gptq": {"bits": 4, "group_size": 32, "desc_act": False}},
                  {"eval": {"data": f"{s3}/data/eval.txt" if on_s3 else str(work["eval"]), "seqlen": 32,
                            "max_windows": 8}}],
        "state_uri": f"{s3}/jobs/{name}/state" if on_s3 else str(work["tmp"] / name / "state"),
        "output_uri": f"{s3}/jobs/{name}/output" if on_s3 else str(work["tmp"] / name / "output"),
        "parallel": {"mode": "sequential", "micro_batch": 2},
        "seed": 7,
        "storage": {"endpoint": endpoint or server.endpoint, "region": "us-east-1", "path_style": True,
                    "part_size_mb": 5, "max_retries": 2},
    }
    if push:
        spec["push"] = {"store": f"{s3}/store", "name": "tiny-w4", "version": "3"}
    return write_spec(work["tmp"] / f"{name}.json", spec)


def local_digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(directory).iterdir())}


def s3_objects(server, prefix):
    pages = server.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))


def s3_digests(server, prefix):
    return {name: hashlib.sha256(server.s3.get_object(Bucket=BUCKET, Key=prefix + name)["Body"].read()).hexdigest()
            for name in s3_objects(server, prefix)}


def s3_json(server, key):
    return json.loads(server.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def local_output(server, work):
    spec = spec_for(server, work, "local", on_s3=False)
    env, tmpdir = job_env(server, work["tmp"] / "local")
    mpirun(2, ["run", spec], env=env)
    assert list(tmpdir.iterdir()) == []  # a job on local paths makes no scratch directory
    return local_digests(work["tmp"] / "local" / "output")


def test_s3_job_matches_local_job(server, work, local_output):
    proxy = FaultProxy(server.port)  # forwards everything, records each request
    try:
        spec = spec_for(server, work, "s3", on_s3=True, endpoint=proxy.endpoint)
        env, tmpdir = job_env(server, work["tmp"] / "s3")
        mpirun(2, ["run", spec], env=env)
        seen = list(proxy.seen)
    finally:
        proxy.stop()
    assert s3_digests(server, "jobs/s3/output/") == local_output
    assert "manifest.json" in local_output and "model.safetensors" in local_output
    # Weights are read by ranged GETs only: never one whole-object GET of the safetensors file.
    weight_gets = [rng for method, path, rng in seen if method == "GET" and path.endswith("/model.safetensors")]
    assert weight_gets and all(rng and rng.startswith("bytes=") for rng in weight_gets)
    journal = s3_json(server, "jobs/s3/state/journal.json")
    assert [s["status"] for s in journal["steps"]] == ["done", "done"]
    assert len(journal["steps"][0]["layers"]) == LAYERS
    for entry in journal["steps"][0]["layers"]:
        body = server.s3.get_object(Bucket=BUCKET, Key="jobs/s3/state/" + entry["artifact"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    assert list(tmpdir.iterdir()) == []  # the scratch directory is gone
    status = run([SHARDQ, "status", spec], env=env).stdout  # read from the journal in the bucket
    assert "step 0 gptq       done" in status and f"{LAYERS} layers done" in status


@pytest.mark.parametrize("fault", ["mid-artifact:1", "after-journal:1"])
def test_killed_s3_job_resumes_to_same_bytes(server, work, local_output, fault):
    name = "kill-" + fault.replace(":", "-")
    spec = spec_for(server, work, name, on_s3=True)
    env, _ = job_env(server, work["tmp"] / name, SHARDQ_FAULT=fault)
    killed = mpirun(2, ["run", spec], env=env, check=False)
    assert killed.returncode != 0
    assert "manifest.json" not in s3_objects(server, f"jobs/{name}/output/")
    done_before = len(s3_json(server, f"jobs/{name}/state/journal.json")["steps"][0]["layers"])
    assert done_before == (1 if fault == "mid-artifact:1" else 2)
    # Parts a killed process left in unfinished multipart uploads, under the state and the output.
    for key in (f"jobs/{name}/state/step0/big.bin", f"jobs/{name}/output/model.safetensors"):
        upload = server.s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        server.s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=b"left behind")
    env, tmpdir = job_env(server, work["tmp"] / name / "rerun")
    rerun = mpirun(2, ["run", spec], env=env)
    assert "replayed from the journal" in rerun.stderr
    assert rerun.stderr.count("aborted 1 unfinished multipart upload left by an earlier run") == 2
    assert server.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"jobs/{name}/").get("Uploads", []) == []
    assert s3_digests(server, f"jobs/{name}/output/") == local_output
    assert list(tmpdir.iterdir()) == []


def test_corrupted_artifact_object_is_redone(server, work, local_output):
    spec = spec_for(server, work, "corrupt", on_s3=True)
    env, _ = job_env(server, work["tmp"] / "corrupt", SHARDQ_FAULT="after-journal:2")
    assert mpirun(2, ["run", spec], env=env, check=False).returncode != 0
    key = "jobs/corrupt/state/step0/layer_001.safetensors"
    data = bytearray(server.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[-1] ^= 0xFF  # still a valid safetensors file, but not the bytes the journal recorded
    server.s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
    env, _ = job_env(server, work["tmp"] / "corrupt" / "rerun")
    rerun = mpirun(2, ["run", spec], env=env)
    assert "layer 1: artifact step0/layer_001.safetensors does not match its sha256" in rerun.stderr
    assert s3_digests(server, "jobs/corrupt/output/") == local_output
    journal = s3_json(server, "jobs/corrupt/state/journal.json")
    body = server.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == journal["steps"][0]["layers"][1]["sha256"]


def test_push_records_the_model_with_its_metrics(server, work, local_output):
    spec = spec_for(server, work, "pushed", on_s3=True, push=True)
    env, tmpdir = job_env(server, work["tmp"] / "pushed")
    mpirun(2, ["run", spec], env=env)
    index = s3_json(server, "store/index.json")
    records = [m for m in index["models"] if m["name"] == "tiny-w4" and m["version"] == "3"]
    assert len(records) == 1
    record = records[0]
    eval_result = s3_json(server, "jobs/pushed/state/journal.json")["steps"][1]["result"]
    assert record["metrics"]["ppl"] == eval_result["ppl"] and record["method"] == "gptq"
    assert record["source_model"] == f"s3://{BUCKET}/models/tiny"
    pushed = s3_digests(server, "store/tiny-w4/3/")
    # The same checkpoint files; only the manifest differs (it gains name, version and metrics).
    assert {k: v for k, v in pushed.items() if k != "manifest.json"} == \
        {k: v for k, v in local_output.items() if k != "manifest.json"}
    manifest = s3_json(server, "store/tiny-w4/3/manifest.json")
    assert manifest["metrics"]["ppl"] == eval_result["ppl"]
    assert manifest["files"] == s3_json(server, "jobs/pushed/output/manifest.json")["files"]
    assert s3_digests(server, "jobs/pushed/output/") == local_output  # output_uri keeps the job's own manifest
    assert list(tmpdir.iterdir()) == []


def test_sharded_s3_model_matches_local(server, work, tmp_path):
    # A sharded checkpoint: the index is staged, each shard's header and tensors come by ranged GETs.
    model = make_model(tmp_path / "sharded", "--layers", str(LAYERS), "--hidden", "64", "--intermediate", "128",
                       "--heads", "4", "--kv-heads", "2", "--vocab", "512", "--seed", "5", "--shards", "3")
    assert (model / "model.safetensors.index.json").exists()
    for f in sorted(model.iterdir()):
        server.s3.upload_file(str(f), BUCKET, f"models/sharded/{f.name}")
    outputs = []
    for name, uri in (("sharded-local", str(model)), ("sharded-s3", f"s3://{BUCKET}/models/sharded")):
        spec_path = spec_for(server, work, name, on_s3=False)
        spec = json.loads(spec_path.read_text())
        spec["model"], spec["steps"] = uri, spec["steps"][:1]
        spec_path.write_text(json.dumps(spec))
        env, _ = job_env(server, work["tmp"] / name)
        mpirun(1, ["run", spec_path], env=env)
        outputs.append(local_digests(work["tmp"] / name / "output"))
    assert outputs[0] == outputs[1] and "model.safetensors" in outputs[0]


def test_bad_bucket_fails_naming_the_uri(server, work):
    spec_path = spec_for(server, work, "bad-bucket", on_s3=True)
    spec = json.loads(spec_path.read_text())
    spec["model"] = "s3://no-such-bucket-here/models/tiny"
    spec_path.write_text(json.dumps(spec))
    env, _ = job_env(server, work["tmp"] / "bad-bucket")
    proc = mpirun(2, ["run", spec_path], env=env, check=False)
    assert proc.returncode != 0
    assert "s3://no-such-bucket-here/models/tiny" in proc.stderr


def test_bad_credentials_fail_without_the_secret(server, work):
    spec = spec_for(server, work, "bad-creds", on_s3=True)
    secret = "ThisSecretMustNeverBeLogged0123456789abcd"
    env, _ = job_env(server, work["tmp"] / "bad-creds", AWS_SECRET_ACCESS_KEY=secret)
    proc = mpirun(2, ["run", spec], env=env, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"s3://{BUCKET}/models/tiny" in out  # the first read: validation, before any write
    assert "403" in out or "SignatureDoesNotMatch" in out
    assert secret not in out


def test_trickling_store_fails_the_job_naming_the_uri(server, work):
    # The spec's own deadlines: a server trickling 1 byte/s is stalled after 1 s on every attempt, so the
    # job ends (every rank) with an error naming the object, instead of waiting forever.
    proxy = FaultProxy(server.port)
    try:
        proxy.inject("trickle", count=1000, methods=("GET",))
        spec_path = spec_for(server, work, "trickled", on_s3=True, endpoint=proxy.endpoint)
        spec = json.loads(spec_path.read_text())
        spec["storage"].update(stall_timeout_s=1, max_retries=1)
        spec_path.write_text(json.dumps(spec))
        env, _ = job_env(server, work["tmp"] / "trickled")
        proc = mpirun(2, ["run", spec_path], env=env, check=False)
    finally:
        proxy.stop()
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "gave up after retries" in line]
    # The first object the job reads (a model file, read for validation before the journal) is named.
    assert errors and all("stalled" in line and f"s3://{BUCKET}/models/tiny" in line for line in errors), errors
