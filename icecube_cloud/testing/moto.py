"""A real S3 API on loopback for tests, demos and benchmarks: ``moto_server`` in a child process.

``MotoServer`` sets no global environment: it hands out the storage options (and the environment for
child processes such as the CLI) that reach it. With ``auth=True`` moto checks credentials: an IAM user
with an allow-all policy is created first, then authentication is switched on, so wrong keys are
refused as they would be by AWS.

Command line (for the Makefile)::

    python -m icecube_cloud.testing.moto up --port 5555 --dir .moto   # prints export lines
    python -m icecube_cloud.testing.moto down --dir .moto
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from icecube_cloud.storage import StorageOptions

REGION = "us-east-1"
"""Region of the mock (bucket creation needs none other)."""
DUMMY_KEY = "icecube-testing"
"""Access key used when moto does not check credentials."""
DUMMY_SECRET = "icecube-testing-secret"
STATE_FILE = "moto.json"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MotoError(RuntimeError):
    """The mock S3 server could not be started or used."""


class MotoServer:
    """``moto_server`` on a loopback port, as a context manager or with ``start()``/``stop()``.

    Args:
        port: TCP port; ``None`` picks a free one.
        host: Interface to bind (loopback).
        auth: Make moto check credentials (an IAM user is created; see :attr:`storage_options`).
        log_path: File for the server's output (default: discarded).
        timeout: Seconds to wait for the server to answer.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        auth: bool = False,
        log_path: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.auth = auth
        self.log_path = log_path
        self.timeout = timeout
        self.key = DUMMY_KEY
        self.secret = DUMMY_SECRET
        self.detach = False
        """Start the server in its own session (it outlives this process; used by ``up``)."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` of the server."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server."""
        return self._proc.pid if self._proc else None

    @property
    def storage_options(self) -> StorageOptions:
        """fsspec/s3fs options that reach this server with valid credentials."""
        return StorageOptions(endpoint_url=self.endpoint_url, key=self.key, secret=self.secret)

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point s3fs, botocore and the CLI at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
        }

    def start(self) -> MotoServer:
        """Start the server and wait until it answers (fresh, empty state)."""
        if self._proc is not None:
            raise MotoError(f"moto is already running at {self.endpoint_url}")
        cmd = [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            out = self._log
        self._proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=self.detach,
        )
        self._wait_ready()
        self.key, self.secret = DUMMY_KEY, DUMMY_SECRET
        if self.auth:
            self._enable_auth()
        return self

    def stop(self) -> None:
        """Stop the server (its state is lost)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> MotoServer:
        """Stop and start again on the same port: frees moto's memory, drops every bucket."""
        self.stop()
        return self.start()

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error when it exists); returns ``s3://name``."""
        status, body = self._s3_request("PUT", f"/{name}")
        if status not in (200, 409):
            raise MotoError(f"cannot create bucket {name!r}: HTTP {status}: {body[:200]!r}")
        return f"s3://{name}"

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise MotoError(
                    f"moto_server exited with code {self._proc.returncode} "
                    f"(port {self.port} in use?)"
                )
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise MotoError(f"moto_server did not answer at {self.endpoint_url} in {self.timeout}s")

    def _enable_auth(self) -> None:
        """Create an allow-all IAM user, take its keys, then make moto check every request."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        self._iam({"Action": "CreateUser", "UserName": "icecube"})
        self._iam(
            {
                "Action": "PutUserPolicy",
                "UserName": "icecube",
                "PolicyName": "all",
                "PolicyDocument": json.dumps(policy),
            }
        )
        body = self._iam({"Action": "CreateAccessKey", "UserName": "icecube"})
        self.key = _xml_text(body, "AccessKeyId")
        self.secret = _xml_text(body, "SecretAccessKey")
        req = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(req, timeout=10):
            pass

    def _iam(self, params: dict[str, str]) -> str:
        data = urllib.parse.urlencode({**params, "Version": "2010-05-08"}).encode()
        req = urllib.request.Request(
            f"{self.endpoint_url}/",
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                # moto routes by the signing service of the Authorization header.
                "Authorization": f"AWS4-HMAC-SHA256 Credential={DUMMY_KEY}/20200101/"
                f"{REGION}/iam/aws4_request, SignedHeaders=host, Signature=0",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(resp.read().decode())

    def _s3_request(self, method: str, path: str) -> tuple[int, bytes]:
        """A SigV4-signed S3 request with the current credentials (no SDK needed)."""
        now = datetime.datetime.now(datetime.UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(b"").hexdigest()
        host = f"{self.host}:{self.port}"
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                method,
                path,
                "",
                *(f"{k}:{headers[k]}" for k in sorted(headers)),
                "",
                signed,
                payload,
            ]
        )
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        k = f"AWS4{self.secret}".encode()
        for part in (day, REGION, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        auth = (
            f"AWS4-HMAC-SHA256 Credential={self.key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        req = urllib.request.Request(
            f"{self.endpoint_url}{path}",
            method=method,
            headers={**{k: v for k, v in headers.items() if k != "host"}, "Authorization": auth},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as err:
            return int(err.code), bytes(err.read())


def _xml_text(body: str, tag: str) -> str:
    start = body.index(f"<{tag}>") + len(tag) + 2
    return body[start : body.index(f"</{tag}>", start)]


def _up(port: int, state_dir: Path, auth: bool) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    state = state_dir / STATE_FILE
    if state.exists():
        print(f"moto already up (state in {state}); run 'down' first", file=sys.stderr)
        return 1
    server = MotoServer(port, auth=auth, log_path=state_dir / "moto.log")
    server.detach = True  # the server must outlive this command
    server.start()
    state.write_text(json.dumps({"pid": server.pid, **server.env}, indent=2))
    server._proc = None  # hand the process over to the state file
    for name, value in server.env.items():
        print(f"export {name}={value}")
    return 0


def _down(state_dir: Path) -> int:
    state = state_dir / STATE_FILE
    if not state.exists():
        print(f"moto is not up (no {state})", file=sys.stderr)
        return 0
    pid = int(json.loads(state.read_text())["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
    state.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``up`` / ``down`` a moto server recorded in a state directory."""
    parser = argparse.ArgumentParser(prog="python -m icecube_cloud.testing.moto")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start moto in the background; prints export lines")
    up.add_argument("--port", type=int, default=5555)
    up.add_argument("--dir", type=Path, default=Path(".moto"))
    up.add_argument("--auth", action="store_true", help="check credentials")
    down = sub.add_parser("down", help="stop the moto started by 'up'")
    down.add_argument("--dir", type=Path, default=Path(".moto"))
    args = parser.parse_args(argv)
    if args.cmd == "up":
        return _up(args.port, args.dir, args.auth)
    return _down(args.dir)


if __name__ == "__main__":
    sys.exit(main())
