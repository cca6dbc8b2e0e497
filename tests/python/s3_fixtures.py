"""s3_fixtures.py: a real S3-compatible server (moto, through moto_s3_server.py) on 127.0.0.1 with signature
checking on, and a fault-injecting HTTP proxy in front of it, for the store tests.

moto checks SigV4 signatures only once IAM authentication is enabled
(INITIAL_NO_AUTH_ACTION_COUNT): the first five requests create an IAM user,
its access key and policy (s3:*, sts:AssumeRole) and a role whose temporary
credentials (access key, secret, session token) test AWS_SESSION_TOKEN; every
later request must be signed with a key moto knows. The proxy forwards requests byte for byte (so signatures stay
valid) and, for a bounded number of requests, injects a fault instead.
"""
import os
import re
import socket
import subprocess
import sys
import threading
import time

import boto3

ROOT = os.environ.get("SHARDQ_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARDQ = os.path.join(ROOT, "shardq")
STORE_TOOL = os.path.join(ROOT, "build", "tools", "store_tool")
BUCKET = "shardq-test"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class MotoServer:
    """moto_server on a free loopback port, with IAM signature checking."""

    def __init__(self, tmpdir):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="5")
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            env.pop(k, None)
        self.log = open(os.path.join(tmpdir, "moto.log"), "wb")
        server = os.path.join(os.path.dirname(os.path.abspath(__file__)), "moto_s3_server.py")
        self.proc = subprocess.Popen([sys.executable, server, "-H", "127.0.0.1", "-p", str(self.port)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="shardq")
        key = iam.create_access_key(UserName="shardq")["AccessKey"]
        iam.put_user_policy(UserName="shardq", PolicyName="s3", PolicyDocument=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","sts:AssumeRole"],"Resource":"*"}]}'))
        role = iam.create_role(RoleName="shardq-role", AssumeRolePolicyDocument=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},'
            '"Action":"sts:AssumeRole"}]}'))["Role"]
        iam.put_role_policy(RoleName="shardq-role", PolicyName="s3", PolicyDocument=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'))
        self.role_arn = role["Arn"]
        self.access_key = key["AccessKeyId"]
        self.secret_key = key["SecretAccessKey"]
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                               aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)
        self.s3.create_bucket(Bucket=BUCKET)

    def env(self, endpoint=None, **extra):
        """Environment for shardq / store_tool talking to this server (or to `endpoint`)."""
        env = dict(os.environ)
        env.update(AWS_ENDPOINT_URL=endpoint or self.endpoint, AWS_ACCESS_KEY_ID=self.access_key,
                   AWS_SECRET_ACCESS_KEY=self.secret_key, AWS_REGION="us-east-1", SHARDQ_S3_BACKOFF_MS="20",
                   SHARDQ_S3_STALL_TIMEOUT_S="5")
        env.pop("AWS_SESSION_TOKEN", None)
        env.update(extra)
        return env

    def temporary_credentials(self):
        """AccessKeyId, SecretAccessKey, SessionToken of the role, from sts:AssumeRole."""
        sts = boto3.client("sts", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)
        return sts.assume_role(RoleArn=self.role_arn, RoleSessionName="shardq-test")["Credentials"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
        if len(data) > 1 << 20:
            return None, b""
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


def _content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _with_connection_close(head):
    lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")]
    return b"\r\n".join(lines + [b"Connection: close"])


def _error_response(status, reason, code):
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>injected {code}</Message></Error>").encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


class FaultProxy:
    """HTTP proxy on loopback that injects queued faults, one per matching request.

    Fault kinds: "500" (InternalError), "503" (SlowDown), "drop" (close without
    answering), "reset" (TCP RST without answering), "truncate" (forward, then
    send half the response body and close), "corrupt" (forward, flip one body
    byte), "corrupt_request" (flip one request body byte), "stall" (answer nothing for 3 s, then close),
    "trickle" (forward, then send the response one byte per second), "endless" (answer 200 with a chunked
    body that never ends, 16 KiB every 0.1 s), "lose_response" (forward, then close without answering: the
    server did the work, the client never hears of it), "no_such_upload" (answer 404 NoSuchUpload, as S3
    answers a repeated CompleteMultipartUpload once the upload is gone), "truncated_listing" (forward, then make the
    listing say IsTruncated true without a NextContinuationToken). A fault applies to the next request
    whose method is in `methods`.
    """

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.faults = []
        self.injected = []
        self.requests = 0
        self.seen = []  # (method, path, Range header or None) of every request
        self.copies = []  # (path, x-amz-copy-source) of every server-side copy request
        self.on_lost_response = None  # called after a "lose_response" request reached the server
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def inject(self, kind, count=1, methods=("GET", "PUT", "POST", "HEAD", "DELETE"), path_contains=""):
        """Queue `count` faults for requests with one of `methods` whose path contains `path_contains`."""
        with self.lock:
            self.faults.extend([(kind, tuple(m.encode() for m in methods), path_contains)] * count)

    def clear(self):
        with self.lock:
            self.faults = []
            self.injected = []
            self.seen = []
            self.copies = []
            self.on_lost_response = None

    def _take_fault(self, head):
        method = head.split(b" ", 1)[0]
        path = head.split(b" ", 2)[1].decode()
        rng = copy_source = None
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"range:"):
                rng = line.split(b":", 1)[1].strip().decode()
            if line.lower().startswith(b"x-amz-copy-source:"):
                copy_source = line.split(b":", 1)[1].strip().decode()
        with self.lock:
            self.requests += 1
            self.seen.append((method.decode(), path, rng))
            if copy_source:
                self.copies.append((path, copy_source))
            for i, (kind, methods, path_contains) in enumerate(self.faults):
                if method in methods and path_contains in path:
                    del self.faults[i]
                    self.injected.append(kind)
                    return kind
        return None

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            conn.settimeout(30)
            head, rest = _read_head(conn)
            if head is None:
                return
            need = _content_length(head)
            while len(rest) < need:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                rest += chunk
            fault = self._take_fault(head)
            if fault == "500":
                conn.sendall(_error_response(500, "Internal Server Error", "InternalError"))
                return
            if fault == "503":
                conn.sendall(_error_response(503, "Slow Down", "SlowDown"))
                return
            if fault == "no_such_upload":
                conn.sendall(_error_response(404, "Not Found", "NoSuchUpload"))
                return
            if fault == "drop":
                return
            if fault == "stall":
                time.sleep(3)
                return
            if fault == "endless":
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                while True:
                    conn.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
                    time.sleep(0.1)
            if fault == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return
            if fault == "corrupt_request" and rest:
                rest = bytes([rest[0] ^ 0xFF]) + rest[1:]
            up = socket.create_connection(("127.0.0.1", self.upstream_port), 30)
            up.sendall(_with_connection_close(head) + b"\r\n\r\n" + rest)
            response = b""
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                response += chunk
            up.close()
            rhead, _, rbody = response.partition(b"\r\n\r\n")
            rhead = _with_connection_close(rhead)
            if fault == "lose_response":
                if self.on_lost_response:
                    self.on_lost_response()
                return
            if fault == "trickle":
                for i in range(len(rhead) + 4 + len(rbody)):
                    conn.sendall((rhead + b"\r\n\r\n" + rbody)[i:i + 1])
                    time.sleep(1)
                return
            if fault == "truncated_listing":
                rbody = re.sub(rb"<NextContinuationToken>.*?</NextContinuationToken>", b"", rbody)
                rbody = rbody.replace(b"<IsTruncated>false</IsTruncated>", b"<IsTruncated>true</IsTruncated>")
                rhead = b"\r\n".join(l for l in rhead.split(b"\r\n") if not l.lower().startswith(b"content-length:"))
                rhead += f"\r\nContent-Length: {len(rbody)}".encode()
            if fault == "truncate" and len(rbody) > 1:
                conn.sendall(rhead + b"\r\n\r\n" + rbody[: len(rbody) // 2])
                return
            if fault == "corrupt" and len(rbody) > 0:
                rbody = bytes([rbody[0] ^ 0xFF]) + rbody[1:]
            conn.sendall(rhead + b"\r\n\r\n" + rbody)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.running = False
        self.sock.close()
