"""Builds that survive failure (issue #7): leases, worker loss, Ctrl-C — each against real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xarray as xr
from distributed import Client
from helpers import cube_files

from icecube_cloud.build import build_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.storage import StorageTarget
from icecube_cloud.synthetic import make_stack
from icecube_cloud.write.lease import LEASE_KEY, LeaseHeldError, acquire

EXE = str(Path(sys.executable).parent / "icecube-cloud")
CFG = {"chunks": {"azimuth": 32, "range": 32}}


@pytest.fixture
def stack(tmp_path, dask_scheduler):
    # GRD COGs: their bands are one chunk row each (72 band tasks with CFG), so that a build is still
    # running when a test interrupts it. Local legacy GRDs would merge each small image into one band.
    make_stack(
        tmp_path / "products", n=6, shape=(384, 320), start=datetime(2021, 4, 20, tzinfo=UTC),
        days=12, flavour="grd-cog", seed=9,
    )  # fmt: skip
    ingest([str(tmp_path / "products")], str(tmp_path / "cat"))
    build_cube(
        str(tmp_path / "cat"),
        CFG,
        str(tmp_path / "clean.zarr"),
        scheduler=dask_scheduler,
        register=False,
    )
    return tmp_path


def _wait_for_progress(cube: Path, n: int, timeout: float = 60) -> None:
    done = cube / "_icecube" / "done"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done.is_dir() and len(list(done.iterdir())) >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"the build never reached {n} chunks")


def test_lease_is_exclusive_and_expires(tmp_path):
    target = StorageTarget.from_url(str(tmp_path / "cube.zarr"))
    first = acquire(target)
    with pytest.raises(LeaseHeldError, match="another process"):
        acquire(target)
    first.release()
    second = acquire(target, ttl=timedelta(seconds=-1))  # already expired: a crashed build's lease
    third = acquire(target)  # takes the expired lease over
    assert json.loads((tmp_path / "cube.zarr" / LEASE_KEY).read_text())["owner"] == third.owner
    second.release()  # not ours any more: nothing happens
    assert (tmp_path / "cube.zarr" / LEASE_KEY).exists()
    third.release()
    assert not (tmp_path / "cube.zarr" / LEASE_KEY).exists()


def test_lease_on_s3_uses_conditional_writes(moto_s3):
    bucket = moto_s3.make_bucket("icecube-leases")
    target = StorageTarget.from_url(f"{bucket}/cube.zarr", moto_s3.storage_options)
    lease = acquire(target)
    with pytest.raises(LeaseHeldError):
        acquire(target)
    lease.release()
    stale = acquire(target, ttl=timedelta(seconds=-1))
    taker = acquire(target)
    assert taker.owner != stale.owner
    taker.release()


def test_concurrent_builds_never_interleave(stack, dask_scheduler):
    out = stack / "cube.zarr"
    cfg = stack / "cfg.json"
    cfg.write_text(json.dumps(CFG))
    cmd = [EXE, "build", "--stac-url", str(stack / "cat"), "--config", str(cfg), "--out", str(out),
           "--scheduler", dask_scheduler, "--no-register", "--quiet"]  # fmt: skip
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0, results
    loser = next(err for code, err in results if code != 0)
    assert codes[1] in (1, 2) and ("another process" in loser or "already exists" in loser), results
    assert cube_files(out) == cube_files(stack / "clean.zarr")


def test_sigkilled_worker_gives_identical_bytes(stack, dask_processes):
    out = stack / "cube.zarr"
    with Client(dask_processes) as client:
        victims = list(client.run(os.getpid).values())
    errors: list[BaseException] = []

    def build() -> None:
        try:
            build_cube(str(stack / "cat"), CFG, str(out), scheduler=dask_processes, register=False)
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=build)
    thread.start()
    _wait_for_progress(out, 10)
    os.kill(victims[0], signal.SIGKILL)  # a worker dies mid-build; its nanny starts a new one
    thread.join(timeout=300)
    assert not errors, errors
    assert cube_files(out) == cube_files(stack / "clean.zarr")


def test_commit_removes_the_litter_of_killed_writes(stack, dask_scheduler, monkeypatch):
    """A worker killed between writing a chunk's temporary file and renaming it leaves the file
    behind (zarr's LocalStore); the retried task rewrites the chunk, and the commit sweeps the litter."""
    from icecube_cloud.build import plan_cube
    from icecube_cloud.write.journal import Journal
    from icecube_cloud.write.materialise import execute

    out = stack / "cube.zarr"
    litter = out / "amplitude" / "c" / "0" / "1" / "2.0123456789abcdef.partial"

    commit = Journal.commit

    def commit_after_a_kill(self, root_doc, attrs):  # as if a killed worker had left its file
        litter.parent.mkdir(parents=True, exist_ok=True)
        litter.write_bytes(b"half a chunk")
        commit(self, root_doc, attrs)

    monkeypatch.setattr(Journal, "commit", commit_after_a_kill)
    with Client(dask_scheduler) as client:
        execute(plan_cube(str(stack / "cat"), CFG), str(out), client=client)
    assert not litter.exists()
    assert cube_files(out) == cube_files(stack / "clean.zarr")


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(stack, dask_scheduler):
    # Small chunks (4x the tasks of CFG) so that the build is still running when SIGINT arrives.
    small = {"chunks": {"azimuth": 16, "range": 16}}
    build_cube(str(stack / "cat"), small, str(stack / "clean16.zarr"), scheduler=dask_scheduler,
               register=False)  # fmt: skip
    out = stack / "cube.zarr"
    cfg = stack / "cfg.json"
    cfg.write_text(json.dumps(small))
    cmd = [EXE, "build", "--stac-url", str(stack / "cat"), "--config", str(cfg), "--out", str(out),
           "--workers", "1", "--no-register"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_progress(out, 5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Rerun the same command to resume" in err and "KeyboardInterrupt" not in err
    with pytest.raises(Exception, match=r"(?i)group|not found|zarr"):
        xr.open_zarr(out)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert cube_files(out) == cube_files(stack / "clean16.zarr")


def test_a_polling_reader_never_sees_an_incomplete_cube(stack, dask_scheduler):
    """Readers poll while a build runs: every open either fails or shows the whole, finished cube."""
    out = stack / "cube.zarr"
    clean = xr.open_zarr(stack / "clean.zarr")
    want = int(clean["amplitude"].astype("int64").sum())
    seen: list[str] = []
    finished = threading.Event()

    def poll() -> None:
        while not finished.is_set():
            try:
                ds = xr.open_zarr(out)
            except Exception:
                seen.append("absent")
                continue
            status = ds.attrs.get("icecube_cloud_status")
            total = int(ds["amplitude"].astype("int64").sum())
            seen.append(
                "complete" if status == "complete" and total == want else f"BAD {status} {total}"
            )

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        build_cube(str(stack / "cat"), CFG, str(out), scheduler=dask_scheduler, register=False)
    finally:
        finished.set()
        reader.join(timeout=60)
    ds = xr.open_zarr(out)  # and after the build, the cube is there
    assert int(ds["amplitude"].astype("int64").sum()) == want
    assert seen and "absent" in seen
    assert not [s for s in seen if s.startswith("BAD")], seen
