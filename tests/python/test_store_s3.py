"""test_store_s3.py: the storage API (through build/tools/store_tool) against a real
S3-compatible server (moto, signatures checked) on loopback, with injected faults.

Expectations are independent of shardq: object contents and ETags are read back
with boto3 and hashlib, ranges are Python slices."""
import hashlib
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from s3_fixtures import BUCKET, STORE_TOOL, FaultProxy, MotoServer  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MotoServer(str(tmp_path_factory.mktemp("moto")))
    proxy = FaultProxy(srv.port)
    srv.proxy = proxy
    yield srv
    proxy.stop()
    srv.stop()


def tool(env, *args, check=True):
    r = subprocess.run([STORE_TOOL, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"store_tool {args} failed: {r.stderr}")
    return r


def uri(key):
    return f"s3://{BUCKET}/{key}"


def assert_no_secret(server, *texts):
    for t in texts:
        assert server.secret_key not in t
        assert "Signature=" not in t and "Authorization" not in t


def test_small_round_trip_head_list_delete(server, tmp_path):
    data = os.urandom(1000) + b"shardq"
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    env = server.env()
    tool(env, "put", uri("small/a.bin"), str(src))
    tool(env, "putfile", uri("small/sub/b.bin"), str(src))
    got = server.s3.get_object(Bucket=BUCKET, Key="small/a.bin")
    assert got["Body"].read() == data
    assert got["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    tool(env, "get", uri("small/a.bin"), str(tmp_path / "g1"))
    tool(env, "getfile", uri("small/sub/b.bin"), str(tmp_path / "d" / "g2"))
    assert (tmp_path / "g1").read_bytes() == data
    assert (tmp_path / "d" / "g2").read_bytes() == data
    head = tool(env, "head", uri("small/a.bin")).stdout.split()
    assert head == [str(len(data)), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()]
    listing = tool(env, "list", uri("small")).stdout.splitlines()
    assert listing == [f"{len(data)} a.bin", f"{len(data)} sub/b.bin"]
    tool(env, "delete", uri("small/a.bin"))
    r = tool(env, "head", uri("small/a.bin"), check=False)
    assert r.returncode == 1 and "not found" in r.stderr and uri("small/a.bin") in r.stderr
    assert tool(env, "list", uri("small")).stdout.splitlines() == [f"{len(data)} sub/b.bin"]
    r = tool(env, "get", uri("small/missing"), str(tmp_path / "x"), check=False)
    assert r.returncode == 1 and "404 NoSuchKey" in r.stderr and uri("small/missing") in r.stderr
    r = tool(env, "getfile", uri("small/missing"), str(tmp_path / "y" / "z"), check=False)
    assert r.returncode == 1 and "404 NoSuchKey" in r.stderr
    assert os.listdir(tmp_path / "y") == []


def test_multipart_round_trip(server, tmp_path):
    data = os.urandom(11 * 1024 * 1024 + 12345)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    env = server.env(SHARDQ_S3_PART_SIZE_MB="5", SHARDQ_S3_PARALLEL_PARTS="3")
    tool(env, "putfile", uri("big/file.bin"), str(src))
    tool(env, "put", uri("big/mem.bin"), str(src))
    for key in ("big/file.bin", "big/mem.bin"):
        got = server.s3.get_object(Bucket=BUCKET, Key=key)
        assert got["ETag"].strip('"').endswith("-3")
        assert got["Metadata"]["shardq-sha256"] == hashlib.sha256(data).hexdigest()
        assert hashlib.sha256(got["Body"].read()).hexdigest() == hashlib.sha256(data).hexdigest()
    tool(env, "getfile", uri("big/file.bin"), str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    assert server.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_part_size_below_s3_minimum_is_refused(server, tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"x" * 100)
    r = tool(server.env(SHARDQ_S3_PART_SIZE_MB="1"), "put", uri("x"), str(src), check=False)
    assert r.returncode == 1 and "part size" in r.stderr


def test_ranged_reads(server, tmp_path):
    data = bytes(range(256)) * 64
    server.s3.put_object(Bucket=BUCKET, Key="range/obj", Body=data)
    env = server.env()
    for off, n in [(0, 8), (8, 100), (1000, 1), (len(data) - 17, 17), (0, len(data))]:
        out = tmp_path / f"r{off}_{n}"
        tool(env, "range", uri("range/obj"), str(off), str(n), str(out))
        assert out.read_bytes() == data[off:off + n]
    r = tool(env, "range", uri("range/obj"), str(len(data) - 4), "8", str(tmp_path / "past"), check=False)
    assert r.returncode == 1 and uri("range/obj") in r.stderr


def test_wrong_secret_is_refused_without_leaking_it(server, tmp_path):
    src = tmp_path / "s.bin"
    src.write_bytes(b"secret test")
    wrong = "WRONGsecretKEY/abcdefghijklmnopqrstuvwxyz0"
    env = server.env(AWS_SECRET_ACCESS_KEY=wrong, SHARDQ_LOG="2")
    for args in (("put", uri("auth/x"), str(src)), ("get", uri("range/obj"), str(tmp_path / "o"))):
        r = tool(env, *args, check=False)
        assert r.returncode == 1
        assert "403" in r.stderr and "SignatureDoesNotMatch" in r.stderr
        assert args[1] in r.stderr
        assert wrong not in r.stdout + r.stderr
        assert_no_secret(server, r.stdout, r.stderr)
    assert "Contents" not in server.s3.list_objects_v2(Bucket=BUCKET, Prefix="auth/")


def test_unknown_access_key_is_refused(server, tmp_path):
    r = tool(server.env(AWS_ACCESS_KEY_ID="AKIANOTAREALKEY00000"), "get", uri("range/obj"), str(tmp_path / "o"),
             check=False)
    assert r.returncode == 1 and "403" in r.stderr


def test_session_token_is_signed_and_required(server, tmp_path):
    data = b"temporary credentials"
    server.s3.put_object(Bucket=BUCKET, Key="sts/obj", Body=data)
    c = server.temporary_credentials()
    env = server.env(AWS_ACCESS_KEY_ID=c["AccessKeyId"], AWS_SECRET_ACCESS_KEY=c["SecretAccessKey"],
                     AWS_SESSION_TOKEN=c["SessionToken"], SHARDQ_LOG="2")
    r = tool(env, "get", uri("sts/obj"), str(tmp_path / "o"))
    assert (tmp_path / "o").read_bytes() == data
    assert c["SessionToken"] not in r.stdout + r.stderr and c["SecretAccessKey"] not in r.stdout + r.stderr
    del env["AWS_SESSION_TOKEN"]
    r = tool(env, "get", uri("sts/obj"), str(tmp_path / "o2"), check=False)
    assert r.returncode == 1 and "403" in r.stderr
    env["AWS_SESSION_TOKEN"] = c["SessionToken"][:-4] + "AAAA"
    r = tool(env, "get", uri("sts/obj"), str(tmp_path / "o3"), check=False)
    assert r.returncode == 1 and "InvalidToken" in r.stderr and c["SessionToken"][:-4] not in r.stderr


def test_virtual_host_addressing(server, tmp_path):
    # curl resolves *.localhost to loopback itself, so bucket.localhost:PORT reaches moto.
    src = tmp_path / "v.bin"
    src.write_bytes(b"virtual-host style")
    env = server.env(endpoint=f"http://localhost:{server.port}", SHARDQ_S3_PATH_STYLE="0")
    tool(env, "put", uri("vhost/v.bin"), str(src))
    assert server.s3.get_object(Bucket=BUCKET, Key="vhost/v.bin")["Body"].read() == b"virtual-host style"
    assert tool(env, "list", uri("vhost")).stdout.split() == ["18", "v.bin"]


@pytest.mark.parametrize("kind", ["500", "503", "drop", "reset", "truncate", "corrupt", "stall"])
def test_download_faults_are_retried(server, tmp_path, kind):
    data = os.urandom(200000)
    server.s3.put_object(Bucket=BUCKET, Key=f"fault/{kind}", Body=data)
    proxy = server.proxy
    proxy.clear()
    proxy.inject(kind, count=2, methods=("GET",))
    env = server.env(endpoint=proxy.endpoint, SHARDQ_S3_STALL_TIMEOUT_S="1")
    r = tool(env, "getfile", uri(f"fault/{kind}"), str(tmp_path / "out"))
    assert proxy.injected == [kind, kind]
    assert (tmp_path / "out").read_bytes() == data
    assert r.stderr.count("retry") == 2
    assert_no_secret(server, r.stdout, r.stderr)


@pytest.mark.parametrize("kind", ["500", "503", "drop", "reset"])
def test_upload_faults_are_retried(server, tmp_path, kind):
    data = os.urandom(5000)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    proxy = server.proxy
    proxy.clear()
    proxy.inject(kind, count=2, methods=("PUT",))
    r = tool(server.env(endpoint=proxy.endpoint), "put", uri(f"upfault/{kind}"), str(src))
    assert proxy.injected == [kind, kind]
    assert server.s3.get_object(Bucket=BUCKET, Key=f"upfault/{kind}")["Body"].read() == data
    assert_no_secret(server, r.stdout, r.stderr)


def test_upload_corrupted_in_transit_is_detected_and_resent(server, tmp_path):
    # moto stores whatever body arrives; the ETag check against our MD5 catches it.
    data = os.urandom(5000)
    src = tmp_path / "c.bin"
    src.write_bytes(data)
    proxy = server.proxy
    proxy.clear()
    proxy.inject("corrupt_request", count=1, methods=("PUT",))
    r = tool(server.env(endpoint=proxy.endpoint), "put", uri("corrupt/obj"), str(src))
    assert proxy.injected == ["corrupt_request"] and "differs from the uploaded body's MD5" in r.stderr
    assert server.s3.get_object(Bucket=BUCKET, Key="corrupt/obj")["Body"].read() == data


def test_multipart_part_faults_are_retried(server, tmp_path):
    data = os.urandom(10 * 1024 * 1024 + 1)
    src = tmp_path / "mp.bin"
    src.write_bytes(data)
    proxy = server.proxy
    proxy.clear()
    proxy.inject("503", count=2, methods=("PUT",))
    proxy.inject("corrupt_request", count=1, methods=("PUT",))
    proxy.inject("reset", count=1, methods=("POST",))
    env = server.env(endpoint=proxy.endpoint, SHARDQ_S3_PART_SIZE_MB="5")
    tool(env, "putfile", uri("mpfault/obj"), str(src))
    assert sorted(proxy.injected) == ["503", "503", "corrupt_request", "reset"]
    got = server.s3.get_object(Bucket=BUCKET, Key="mpfault/obj")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_multipart_download_corruption_is_caught_by_sha256(server, tmp_path):
    # A multipart ETag is not an MD5 of the body; the recorded SHA-256 still checks it.
    data = os.urandom(10 * 1024 * 1024 + 7)
    src = tmp_path / "mp.bin"
    src.write_bytes(data)
    env = server.env(SHARDQ_S3_PART_SIZE_MB="5")
    tool(env, "putfile", uri("mpget/obj"), str(src))
    proxy = server.proxy
    proxy.clear()
    proxy.inject("corrupt", count=1, methods=("GET",))
    r = tool(server.env(endpoint=proxy.endpoint), "getfile", uri("mpget/obj"), str(tmp_path / "out"))
    assert proxy.injected == ["corrupt"] and "SHA-256" in r.stderr
    assert (tmp_path / "out").read_bytes() == data


def test_object_not_matching_its_sha256_is_refused(server, tmp_path):
    server.s3.put_object(Bucket=BUCKET, Key="badsha/obj", Body=b"payload",
                         Metadata={"shardq-sha256": hashlib.sha256(b"other").hexdigest()})
    r = tool(server.env(SHARDQ_S3_MAX_RETRIES="1"), "get", uri("badsha/obj"), str(tmp_path / "o"), check=False)
    assert r.returncode == 1 and uri("badsha/obj") in r.stderr and "SHA-256" in r.stderr
    assert not (tmp_path / "o").exists()


def test_persistent_fault_is_reported_cleanly(server, tmp_path):
    proxy = server.proxy
    proxy.clear()
    proxy.inject("503", count=50, methods=("GET",))
    before = proxy.requests
    env = server.env(endpoint=proxy.endpoint, SHARDQ_S3_MAX_RETRIES="2")
    r = tool(env, "get", uri("range/obj"), str(tmp_path / "o"), check=False)
    proxy.clear()
    assert r.returncode == 1
    assert proxy.requests - before == 3
    last = r.stderr.strip().splitlines()[-1]
    assert uri("range/obj") in last and "503 SlowDown" in last and "gave up" in last
    assert not (tmp_path / "o").exists()
    assert_no_secret(server, r.stdout, r.stderr)


def test_failed_multipart_upload_is_aborted(server, tmp_path):
    data = os.urandom(10 * 1024 * 1024 + 1)
    src = tmp_path / "mp.bin"
    src.write_bytes(data)
    proxy = server.proxy
    proxy.clear()
    proxy.inject("500", count=50, methods=("PUT",))
    env = server.env(endpoint=proxy.endpoint, SHARDQ_S3_PART_SIZE_MB="5", SHARDQ_S3_MAX_RETRIES="1")
    r = tool(env, "putfile", uri("mpabort/obj"), str(src), check=False)
    proxy.clear()
    assert r.returncode == 1
    assert "multipart upload aborted" in r.stderr and uri("mpabort/obj") in r.stderr
    assert server.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in server.s3.list_objects_v2(Bucket=BUCKET, Prefix="mpabort/")


@pytest.mark.parametrize("fault,settings,why", [
    # 1 byte/s is far below the 1024 bytes/s floor: every attempt is stalled after 1 s, whatever the machine.
    ("trickle", {"SHARDQ_S3_STALL_TIMEOUT_S": "1"}, "stalled"),
    # 160 KB/s never stalls, but a body without end never finishes: the 1 s deadline ends each attempt.
    ("endless", {"SHARDQ_S3_REQUEST_TIMEOUT_S": "1", "SHARDQ_S3_STALL_TIMEOUT_S": "30"}, "deadline"),
])
def test_server_that_never_finishes_ends_in_an_error_naming_the_uri(server, tmp_path, fault, settings, why):
    server.s3.put_object(Bucket=BUCKET, Key="slow/obj", Body=os.urandom(5000))
    proxy = server.proxy
    proxy.clear()
    proxy.inject(fault, count=50, methods=("GET",))
    before = proxy.requests
    env = server.env(endpoint=proxy.endpoint, SHARDQ_S3_MAX_RETRIES="1", **settings)
    r = tool(env, "getfile", uri("slow/obj"), str(tmp_path / "out"), check=False)
    proxy.clear()
    assert r.returncode == 1
    assert proxy.requests - before == 2
    last = r.stderr.strip().splitlines()[-1]
    assert uri("slow/obj") in last and why in last and "gave up after retries" in last
    assert not (tmp_path / "out").exists()


def test_one_trickled_answer_is_retried(server, tmp_path):
    data = os.urandom(5000)
    server.s3.put_object(Bucket=BUCKET, Key="trickle/once", Body=data)
    proxy = server.proxy
    proxy.clear()
    proxy.inject("trickle", count=1, methods=("GET",))
    env = server.env(endpoint=proxy.endpoint, SHARDQ_S3_STALL_TIMEOUT_S="1")
    r = tool(env, "get", uri("trickle/once"), str(tmp_path / "out"))
    assert proxy.injected == ["trickle"] and "stalled" in r.stderr
    assert (tmp_path / "out").read_bytes() == data


@pytest.mark.parametrize("name,value", [("SHARDQ_S3_MAX_RETRIES", "three"), ("SHARDQ_S3_PART_SIZE_MB", "8MB"),
                                        ("SHARDQ_S3_STALL_TIMEOUT_S", "0"), ("SHARDQ_S3_LOW_SPEED_BYTES", "1.5"),
                                        ("SHARDQ_S3_REQUEST_TIMEOUT_S", "-5"), ("SHARDQ_S3_PATH_STYLE", "yes"),
                                        ("SHARDQ_S3_PARALLEL_PARTS", "99999999999999999999")])
def test_bad_tuning_variable_is_refused_by_name(server, name, value):
    proxy = server.proxy
    proxy.clear()
    before = proxy.requests
    r = tool(server.env(endpoint=proxy.endpoint, **{name: value}), "head", uri("range/obj"), check=False)
    assert r.returncode == 1 and f"{name}='{value}'" in r.stderr and "must be an integer" in r.stderr
    assert proxy.requests == before  # refused before any request


def test_listing_truncated_without_a_token_is_an_error(server, tmp_path):
    server.s3.put_object(Bucket=BUCKET, Key="trunc/a", Body=b"a")
    proxy = server.proxy
    proxy.clear()
    proxy.inject("truncated_listing", count=1, methods=("GET",), path_contains="list-type")
    r = tool(server.env(endpoint=proxy.endpoint), "list", uri("trunc"), check=False)
    assert proxy.injected == ["truncated_listing"]
    assert r.returncode == 1 and "IsTruncated" in r.stderr and "NextContinuationToken" in r.stderr
    assert uri("trunc") in r.stderr and r.stdout == ""


def put_with_lost_completion(server, tmp_path, key, on_lost_response=None):
    """A multipart putfile whose first CompleteMultipartUpload reaches the server but whose answer is lost;
    the retry is answered NoSuchUpload (S3 does once the upload is gone; moto would repeat the success, so
    the proxy answers it). Returns the run, the data and the faults injected."""
    data = os.urandom(10 * 1024 * 1024 + 3)
    src = tmp_path / "mp.bin"
    src.write_bytes(data)
    proxy = server.proxy
    proxy.clear()
    proxy.inject("lose_response", count=1, methods=("POST",), path_contains="uploadId=")
    proxy.inject("no_such_upload", count=1, methods=("POST",), path_contains="uploadId=")
    proxy.on_lost_response = on_lost_response
    r = tool(server.env(endpoint=proxy.endpoint, SHARDQ_S3_PART_SIZE_MB="5"), "putfile", uri(key), str(src),
             check=False)
    injected = list(proxy.injected)
    proxy.clear()
    return r, data, injected


def test_completion_whose_answer_was_lost_is_checked_and_kept(server, tmp_path):
    # The object is the upload's (size, ETag, SHA-256), so the put succeeds.
    r, data, injected = put_with_lost_completion(server, tmp_path, "lost/obj")
    assert injected == ["lose_response", "no_such_upload"] and r.returncode == 0, r.stderr
    assert "the first CompleteMultipartUpload succeeded" in r.stderr and "aborted" not in r.stderr
    got = server.s3.get_object(Bucket=BUCKET, Key="lost/obj")
    md5s = b"".join(hashlib.md5(data[i:i + (5 << 20)]).digest() for i in range(0, len(data), 5 << 20))
    assert got["ETag"].strip('"') == hashlib.md5(md5s).hexdigest() + "-3"
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(data).digest()
    assert server.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_lost_completion_over_another_object_is_refused(server, tmp_path):
    # What is at the key is not this upload (another writer replaced it between the lost answer and the
    # retry): the put fails, naming the URI, and the other writer's object stays.
    def other_writer():
        server.s3.put_object(Bucket=BUCKET, Key="lost/other", Body=b"someone else's bytes")
    r, _, injected = put_with_lost_completion(server, tmp_path, "lost/other", other_writer)
    assert injected == ["lose_response", "no_such_upload"] and r.returncode == 1
    assert uri("lost/other") in r.stderr and "not this upload" in r.stderr
    assert server.s3.get_object(Bucket=BUCKET, Key="lost/other")["Body"].read() == b"someone else's bytes"


def test_unfinished_uploads_under_a_prefix_are_aborted(server):
    keys = ["stale/job/state/a.bin", "stale/job/state/sub/b.bin", "stale/job/output/c.bin", "stale/jobx/d.bin"]
    for key in keys:
        upload = server.s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        server.s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=b"part")
    env = server.env()
    assert tool(env, "abort-uploads", uri("stale/job/state")).stdout.split() == ["2"]

    def left():
        return sorted(u["Key"] for u in server.s3.list_multipart_uploads(Bucket=BUCKET, Prefix="stale/")
                      .get("Uploads", []))
    assert left() == ["stale/job/output/c.bin", "stale/jobx/d.bin"]
    assert tool(env, "abort-uploads", uri("stale/job")).stdout.split() == ["1"]  # not stale/jobx/
    assert left() == ["stale/jobx/d.bin"]
    assert tool(env, "abort-uploads", uri("stale/job")).stdout.split() == ["0"]
    assert tool(env, "abort-uploads", uri("stale/jobx")).stdout.split() == ["1"]
    assert left() == []
