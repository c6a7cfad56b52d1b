"""Progress as users see it: rich bars on a terminal, plain lines in a pipe, nothing with --quiet.

The CLI runs as the real ``icecube-cloud`` console script, its stderr a pseudo-terminal or a pipe; the
adapters of :mod:`icecube_cloud.progress` are checked on their own below.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from icecube_cloud.progress import (
    PlainLines,
    Reporter,
    RichBars,
    TqdmBars,
    no_progress,
    resolve_progress,
)
from icecube_cloud.synthetic import make_stack

EXE = str(Path(sys.executable).parent / "icecube-cloud")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
N = 6


def run_in_pty(*args: str) -> tuple[int, str, str]:
    """Run the console script with its stderr on a pseudo-terminal; (exit code, stdout, terminal)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [EXE, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    seen = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        seen.append(data)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.wait(timeout=300)
    os.close(master)
    return proc.returncode, out, b"".join(seen).decode()


def run_piped(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300)


def frames(terminal: str) -> list[str]:
    """What the terminal showed, one redraw per entry, escape sequences removed."""
    return [f.strip() for f in re.split(r"[\r\n]+", ANSI.sub("", terminal)) if f.strip()]


def last_frame(terminal: str, stage: str) -> str:
    return [f for f in frames(terminal) if f.split()[0] == stage][-1]


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    make_stack(
        tmp_path / "products",
        n=N,
        shape=(200, 150),
        start=datetime(2021, 4, 20, tzinfo=UTC),
        days=12,
        flavour="legacy-grd",
        seed=7,
    )
    (tmp_path / "cfg.json").write_text(json.dumps({}))
    return tmp_path


def _build(tmp: Path, out: str, scheduler: str, *extra: str) -> tuple[str, ...]:
    cat, cfg = str(tmp / "cat"), str(tmp / "cfg.json")
    return ("build", "--stac-url", cat, "--config", cfg, "--out", str(tmp / out),
            "--scheduler", scheduler, *extra)  # fmt: skip


def test_terminal_shows_rich_bars_with_units_rate_and_eta(stack, dask_scheduler):
    code, out, term = run_in_pty("catalog", "ingest", str(stack / "products"), "--stac-url",
                                 str(stack / "cat"))  # fmt: skip
    assert code == 0, term
    assert f"{N} added" in out and "\x1b[" not in out  # results stay plain, on stdout
    assert "\x1b[" in term  # drawn, not printed line by line
    read = last_frame(term, "read")
    assert f"{N}/{N} files" in read and "files/s" in read and "took 0:00:" in read, read

    code, out, term = run_in_pty(*_build(stack, "cube.zarr", dask_scheduler))
    assert code == 0, term
    assert f"{N} time slices" in out and "\x1b[" not in out
    shown = frames(term)
    assert any(f.startswith("check") and "eta" in f for f in shown), shown  # while running
    check = last_frame(term, "check")
    assert f"{N}/{N} products" in check and "products/s" in check, check
    write = last_frame(term, "write")  # one band task per image; bytes known: MiB and MiB/s
    assert re.search(rf"{N}/{N} tasks\s+0\.3 MiB\s+\d+\.\d MiB/s took \d:\d\d:\d\d", write), write
    assert "━" in write  # the bar itself
    assert out.count("\n") == 2  # the summary and the registered item, nothing else on stdout


def test_pipe_gets_plain_lines_without_escapes(stack, dask_scheduler):
    r = run_piped("catalog", "ingest", str(stack / "products"), "--stac-url", str(stack / "cat"))
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"read: 0/{N} files", f"read: {N}/{N} files"]

    r = run_piped(*_build(stack, "cube.zarr", dask_scheduler))
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stderr and "\r" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[:3] == ["plan: 1/1 steps", f"check: 0/{N} products", f"check: {N}/{N} products"]
    assert lines[3] == f"write: 0/{N} tasks, 0.0 MiB at 0.0 MiB/s"
    assert re.fullmatch(rf"write: {N}/{N} tasks, 0\.3 MiB at \d+\.\d MiB/s", lines[4]), lines
    assert len(lines) == 5  # a stage this short: its start and its end, nothing else


def test_quiet_draws_nothing_on_a_terminal_or_a_pipe(stack, dask_scheduler):
    code, out, term = run_in_pty("catalog", "ingest", str(stack / "products"), "--stac-url",
                                 str(stack / "cat"), "--quiet")  # fmt: skip
    assert code == 0 and f"{N} added" in out
    assert term == ""
    code, out, term = run_in_pty(*_build(stack, "a.zarr", dask_scheduler, "-q"))
    assert code == 0 and f"{N} time slices" in out
    assert term == ""
    r = run_piped(*_build(stack, "b.zarr", dask_scheduler, "--quiet"))
    assert r.returncode == 0 and r.stderr == ""


def test_error_after_a_bar_is_one_line_on_a_fresh_line(stack, dask_scheduler):
    run_piped("catalog", "ingest", str(stack / "products"), "--stac-url", str(stack / "cat"))
    (stack / "cube.zarr").mkdir()
    (stack / "cube.zarr" / "notes.txt").write_text("mine")
    code, _, term = run_in_pty(*_build(stack, "cube.zarr", dask_scheduler))
    assert code == 2
    assert frames(term)[-1].startswith(f"error: {stack / 'cube.zarr'}")
    assert (stack / "cube.zarr" / "notes.txt").read_text() == "mine"


# The adapters on their own.


def test_three_argument_callbacks_get_three_arguments():
    calls: list[tuple[object, ...]] = []

    def old(stage: str, done: int, total: int) -> None:
        calls.append((stage, done, total))

    report = resolve_progress(old)
    assert not report.wants_bytes
    report("write", 2, 4, nbytes=100)
    assert calls == [("write", 2, 4)]
    resolve_progress(lambda *a: calls.append(a))("check", 1, 2, nbytes=None)
    assert calls[-1] == ("check", 1, 2)


def test_callbacks_that_take_nbytes_get_bytes():
    calls: list[tuple[object, ...]] = []

    def new(stage: str, done: int, total: int, nbytes: int | None = None) -> None:
        calls.append((stage, done, total, nbytes))

    report = resolve_progress(new)
    assert report.wants_bytes
    report("write", 3, 4, nbytes=2**20)
    resolve_progress(lambda s, d, t, **kw: calls.append((s, kw)))("export", 1, 1, nbytes=7)
    assert calls == [("write", 3, 4, 2**20), ("export", {"nbytes": 7})]


def test_resolve_progress_choices():
    assert type(resolve_progress(False)) is Reporter
    assert type(resolve_progress(None)) is Reporter
    assert type(resolve_progress(no_progress)) is Reporter
    assert isinstance(resolve_progress(True), TqdmBars)
    bars = PlainLines()
    assert resolve_progress(bars) is bars  # resolving twice changes nothing


def test_plain_lines_start_end_and_at_most_every_few_seconds(capsys):
    lines = PlainLines(every=3600)
    for done in range(5):
        lines("write", done, 4, nbytes=done * 2**20)
    lines("check", 2, 2)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "write: 0/4 tasks, 0.0 MiB at 0.0 MiB/s"
    assert re.fullmatch(r"write: 4/4 tasks, 4\.0 MiB at \d+\.\d MiB/s", err[1]), err
    assert err[2:] == ["check: 2/2 products"]


def test_rich_bars_on_a_forced_terminal():
    screen = io.StringIO()
    bars = RichBars(Console(file=screen, force_terminal=True, width=120, color_system=None))
    bars("check", 0, 3)
    bars("check", 3, 3)
    bars("write", 0, 8, nbytes=0)
    bars("write", 2, 8, nbytes=2 * 2**20)
    bars.close()  # an error mid-stage: the bar stops where it was
    shown, check, write = frames(screen.getvalue()), last_frame(screen.getvalue(), "check"), ""
    assert re.fullmatch(r"check +━+ 3/3 products [\d.]+ products/s took 0:00:00", check), shown
    assert "write" in shown[-1] and "0/8 tasks 0.0 MiB" in "".join(shown)  # bytes from the start
    write = last_frame(screen.getvalue(), "write")
    assert re.fullmatch(r"write +━+╸? +2/8 tasks 2\.0 MiB +[\d.]+ MiB/s eta \S+", write), shown


def test_tqdm_bars_write_to_stderr(capsys):
    bars = resolve_progress(True)
    bars("write", 0, 4, nbytes=0)
    bars("write", 4, 4, nbytes=4 * 2**20)
    bars("export", 1, 2)
    bars.close()
    err = capsys.readouterr().err
    assert re.search(r"write: 100%\|[^|]*\| 4/4 \[.*tasks/s, 4\.0 MiB, [\d.]+ MiB/s\]", err), err
    assert re.search(r"export:  50%\|[^|]*\| 1/2 \[", err), err


def test_plain_lines_restart_a_stage_that_runs_again(capsys):
    lines = PlainLines(every=3600)
    for _ in range(2):  # e.g. two builds in one process
        lines("check", 0, 1)
        lines("check", 1, 1)
    assert (
        capsys.readouterr().err.splitlines() == ["check: 0/1 products", "check: 1/1 products"] * 2
    )
