"""A real local STAC API: PostgreSQL + PostGIS + pgstac + stac-fastapi-pgstac on loopback (SPEC §7).

:class:`StacApiServer` runs ``initdb`` into a work dir, starts PostgreSQL on a free loopback port,
creates a database and a password-protected role, runs ``pypgstac migrate`` and launches
``stac-fastapi-pgstac`` under uvicorn with the Transactions extension. PostgreSQL refuses to run as
root: when we are root, its processes run as the ``postgres`` user and the data and socket dirs are
owned by it. The test fixtures and ``make catalog-up`` / ``make catalog-down`` use the same code::

    python -m icecube_cloud.testing.stac_api up --dir .stac-api --port 8082
    python -m icecube_cloud.testing.stac_api down --dir .stac-api
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from icecube_cloud.errors import IcecubeError

log = logging.getLogger(__name__)

STATE_FILE = "stac-api.json"
"""Name of the state file in the work dir (pids and ports; never the password)."""
API_APP = "stac_fastapi.pgstac.app:create_app"
"""The stac-fastapi-pgstac application factory (7.x has no module-level ``app``)."""
PG_USER = "icecube"
PG_DATABASE = "icecube"
_PG_SUPERUSER = "postgres"
_PG_TOOLS = ("initdb", "pg_ctl", "postgres", "psql")
_INSTALL_HINT = (
    "run infra/local/install-system-packages.sh (apt: postgresql postgresql-15-postgis-3)"
)


class StacApiServerError(IcecubeError):
    """The local STAC API could not be started or stopped."""


class PostgresNotFoundError(StacApiServerError):
    """PostgreSQL or PostGIS is not installed on this machine."""


def find_postgres_bin() -> Path:
    """The bin dir of an installed PostgreSQL that has PostGIS.

    ``$ICECUBE_PG_BIN`` wins; else the newest ``/usr/lib/postgresql/*/bin`` (Debian), else ``PATH``.

    Raises:
        PostgresNotFoundError: No PostgreSQL server binaries, or no PostGIS extension for them.
    """
    candidates: list[Path] = []
    if os.environ.get("ICECUBE_PG_BIN"):
        candidates.append(Path(os.environ["ICECUBE_PG_BIN"]))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates.extend(Path(p) for p in debian)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in _PG_TOOLS):
            share = _sharedir(bindir)
            if share is not None and (share / "extension" / "postgis.control").is_file():
                return bindir
            raise PostgresNotFoundError(
                f"PostgreSQL found in {bindir} but PostGIS is not installed for it; {_INSTALL_HINT}"
            )
    raise PostgresNotFoundError(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found; {_INSTALL_HINT}"
    )


def _version_key(path: str) -> tuple[int, ...]:
    parts = Path(path).parent.name.split(".")
    return tuple(int(p) for p in parts if p.isdigit())


def _sharedir(bindir: Path) -> Path | None:
    pg_config = bindir / "pg_config"
    if pg_config.is_file():
        out = subprocess.run(
            [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    debian = Path("/usr/share/postgresql") / bindir.parent.name
    return debian if debian.is_dir() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StacApiServer:
    """A local pgstac STAC API with transactions; a context manager, or :meth:`start`/:meth:`stop`.

    Args:
        workdir: Directory for the database cluster, socket and logs; must be absent or empty. It is
            removed again by :meth:`stop`.
        port: API port on 127.0.0.1 (default: a free one).
        pg_port: PostgreSQL port on 127.0.0.1 (default: a free one).
        python: Interpreter that has stac-fastapi-pgstac, uvicorn and pypgstac (default: this one).
        timeout: Seconds to wait for the API to answer.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        port: int | None = None,
        pg_port: int | None = None,
        python: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir).absolute()
        self.port = port
        self.pg_port = pg_port
        self.python = python or os.environ.get("ICECUBE_STAC_API_PYTHON") or sys.executable
        self.timeout = timeout
        self.api_pid: int | None = None
        self._api: subprocess.Popen[bytes] | None = None
        self._bindir: Path | None = None

    @property
    def url(self) -> str:
        """Root URL of the API."""
        if self.port is None:
            raise StacApiServerError("the STAC API has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def _pgdata(self) -> Path:
        return self.workdir / "pgdata"

    @property
    def _sockdir(self) -> Path:
        return self.workdir / "socket"

    @property
    def _logdir(self) -> Path:
        return self.workdir / "log"

    @property
    def api_log(self) -> Path:
        """The uvicorn log file."""
        return self._logdir / "api.log"

    @property
    def pg_log(self) -> Path:
        """The PostgreSQL server log file."""
        return self._logdir / "postgres.log"

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> StacApiServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> StacApiServer:
        """Start PostgreSQL and the API; returns when ``GET /`` answers.

        Raises:
            PostgresNotFoundError: PostgreSQL/PostGIS binaries are missing.
            StacApiServerError: A step failed (the message has the log tail); nothing is left running.
        """
        self._bindir = find_postgres_bin()
        if self.workdir.exists() and any(self.workdir.iterdir()):
            raise StacApiServerError(
                f"{self.workdir} is not empty (a STAC API already running there? stop it first)"
            )
        t0 = time.monotonic()
        try:
            self._prepare_dirs()
            password = secrets.token_urlsafe(18)
            self._start_postgres()
            self._create_database(password)
            self._start_api(password)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._write_state()
        log.info("STAC API at %s ready in %.1f s", self.url, time.monotonic() - t0)
        return self

    def stop(self) -> None:
        """Stop uvicorn and PostgreSQL (``pg_ctl stop -m fast``) and remove what start made."""
        if self._api is not None:
            _terminate(self._api)
            self._api = None
        elif self.api_pid is not None:
            _kill_pid(self.api_pid)
        self.api_pid = None
        if self._pgdata.joinpath("postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30", check=False)
        # Only what start() made: the database, socket and log folders and the state file; then the
        # work dir itself if nothing else is in it.
        for made in (self._pgdata, self._sockdir, self._logdir):
            shutil.rmtree(made, ignore_errors=True)
        (self.workdir / STATE_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.workdir.rmdir()

    @classmethod
    def from_state(cls, workdir: str | os.PathLike[str]) -> StacApiServer:
        """The server recorded in ``workdir`` by :meth:`start` (to stop it from another process).

        Raises:
            StacApiServerError: No state file in ``workdir``.
        """
        path = Path(workdir).absolute() / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StacApiServerError(f"no STAC API state in {path}: {exc}") from None
        server = cls(workdir, port=state["port"], pg_port=state["pg_port"])
        server.api_pid = state.get("api_pid")
        server._bindir = Path(state["pg_bin"])
        return server

    # --- steps ------------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        _check_traversable(self.workdir)
        for d, mode in ((self._pgdata, 0o700), (self._sockdir, 0o700), (self._logdir, 0o755)):
            d.mkdir()
            d.chmod(mode)
            _chown_to_postgres(d)
        self.pg_port = self.pg_port or free_port()
        self.port = self.port or free_port()

    def _start_postgres(self) -> None:
        self._run_pg(
            [
                self._tool("initdb"),
                "-D", str(self._pgdata),
                "-U", _PG_SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )  # fmt: skip
        # A throwaway test database: durability settings off for speed.
        opts = (
            f"-p {self.pg_port} -k '{self._sockdir}' -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("start", "-w", "-t", "30", "-l", str(self.pg_log), "-o", opts)

    def _create_database(self, password: str) -> None:
        sql = (
            f"CREATE ROLE {PG_USER} LOGIN PASSWORD '{password}';\n"
            f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER};\n"
        )
        self._psql("postgres", sql)
        dsn = (
            f"postgresql://{_PG_SUPERUSER}@/{PG_DATABASE}?host={self._sockdir}&port={self.pg_port}"
        )
        pypgstac = [self.python, "-m", "pypgstac.pypgstac", "migrate", "--dsn", dsn]
        out = subprocess.run(pypgstac, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise StacApiServerError(f"pypgstac migrate failed:\n{_tail(out.stderr + out.stdout)}")
        # pgstac's roles: read for search, ingest for the Transactions extension.
        self._psql(PG_DATABASE, f"GRANT pgstac_read, pgstac_ingest TO {PG_USER};\n")

    def _start_api(self, password: str) -> None:
        env = {
            **os.environ,
            "PGUSER": PG_USER,
            "PGPASSWORD": password,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.pg_port),
            "PGDATABASE": PG_DATABASE,
            "ENABLE_TRANSACTIONS_EXTENSIONS": "true",
        }
        cmd = [
            self.python, "-m", "uvicorn", API_APP, "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
        ]  # fmt: skip
        with self.api_log.open("ab") as logf:
            # Own session: survives the `up` command, and Ctrl-C in a terminal does not reach it.
            # cwd = work dir so that the API's settings never read a stray .env file.
            self._api = subprocess.Popen(
                cmd,
                env=env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.api_pid = self._api.pid

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self._api is not None and self._api.poll() is not None:
                raise StacApiServerError(
                    f"the STAC API exited with code {self._api.returncode}:\n"
                    f"{_tail_file(self.api_log)}"
                )
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise StacApiServerError(
            f"the STAC API at {self.url} did not answer within {self.timeout:.0f} s ({last}):\n"
            f"{_tail_file(self.api_log)}"
        )

    def _write_state(self) -> None:
        state = {
            "url": self.url,
            "port": self.port,
            "pg_port": self.pg_port,
            "api_pid": self.api_pid,
            "pg_bin": str(self._bindir),
        }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")

    # --- helpers ----------------------------------------------------------------------------

    def _tool(self, name: str) -> str:
        if self._bindir is None:
            self._bindir = find_postgres_bin()
        return str(self._bindir / name)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        cmd = [self._tool("pg_ctl"), "-D", str(self._pgdata), *args]
        self._run_pg(cmd, f"pg_ctl {args[0]}", check=check)

    def _run_pg(self, cmd: Sequence[str], what: str, *, check: bool = True) -> None:
        """Run a PostgreSQL server tool as the ``postgres`` user when we are root."""
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            kwargs = {"user": _PG_SUPERUSER, "group": _pg_group(), "extra_groups": []}
        out = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            check=False,
            cwd=self.workdir,
            env=_pg_env(),
            **kwargs,
        )
        if check and out.returncode != 0:
            logs = _tail_file(self.pg_log) if self.pg_log.exists() else ""
            raise StacApiServerError(
                f"{what} failed (exit {out.returncode}):\n{_tail(out.stderr + out.stdout)}\n{logs}"
            )

    def _psql(self, database: str, sql: str) -> None:
        cmd = [
            self._tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", str(self._sockdir), "-p", str(self.pg_port),
            "-U", _PG_SUPERUSER, "-d", database, "-f", "-",
        ]  # fmt: skip
        # The SQL (with the role's password) goes through stdin, never onto a command line.
        out = subprocess.run(cmd, input=sql, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise StacApiServerError(f"psql on {database} failed:\n{_tail(out.stderr)}")


def _pg_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    return {k: v for k, v in os.environ.items() if k in keep}


def _pg_group() -> int:
    return pwd.getpwnam(_PG_SUPERUSER).pw_gid


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        pw = pwd.getpwnam(_PG_SUPERUSER)
    except KeyError:
        raise PostgresNotFoundError(
            f"running as root but there is no '{_PG_SUPERUSER}' user; {_INSTALL_HINT}"
        ) from None
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _check_traversable(path: Path) -> None:
    """The ``postgres`` user must reach the work dir: every parent needs the x bit for others."""
    if os.geteuid() != 0:
        return
    for parent in path.parents:
        if not parent.stat().st_mode & 0o001:
            raise StacApiServerError(
                f"the postgres user cannot enter {parent} (mode {parent.stat().st_mode & 0o777:o});"
                f" choose a work dir outside it, e.g. under /tmp"
            )


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _kill_pid(pid: int) -> None:
    """Stop a process started by an earlier ``up`` (not our child: poll until it is gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _tail_file(path: Path, lines: int = 30) -> str:
    try:
        return f"--- {path} (last {lines} lines) ---\n" + _tail(
            path.read_text(encoding="utf-8", errors="replace"), lines
        )
    except OSError:
        return f"(no log at {path})"


# --------------------------------------------------------------------------------------------------
# CLI (make catalog-up / catalog-down)


def main(argv: Sequence[str] | None = None) -> int:
    """``up`` / ``down`` a local STAC API; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m icecube_cloud.testing.stac_api")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a STAC API on loopback and print its URL")
    up.add_argument("--dir", default=".stac-api", help="work dir (database, logs, state)")
    up.add_argument("--port", type=int, default=None, help="API port (default: a free one)")
    up.add_argument("--timeout", type=float, default=60.0)
    down = sub.add_parser("down", help="stop the STAC API started in --dir")
    down.add_argument("--dir", default=".stac-api")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "up":
            state = Path(args.dir) / STATE_FILE
            if state.exists():
                url = json.loads(state.read_text(encoding="utf-8")).get("url")
                print(f"already running at {url} (state in {state})", file=sys.stderr)
                return 1
            server = StacApiServer(args.dir, port=args.port, timeout=args.timeout).start()
            print(server.url)
        else:
            StacApiServer.from_state(args.dir).stop()
            print(f"stopped the STAC API in {args.dir}")
    except StacApiServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
