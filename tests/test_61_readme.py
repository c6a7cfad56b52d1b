"""The README's Python example runs as written, saved as a script next to what `make demo` writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from icecube_cloud.cube import open_cube
from icecube_cloud.demo import DEMO_START
from icecube_cloud.ingest import ingest
from icecube_cloud.synthetic import make_stack

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The README's ```python block that builds a cube with icecube_cloud."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    (example,) = [b for b in blocks if "import icecube_cloud" in b and "build_cube" in b]
    return str(example)


@pytest.fixture
def demo_folder(tmp_path: Path) -> Path:
    """A working folder with `demo/catalog` as `make demo` writes it (smaller images)."""
    products = tmp_path / "demo" / "products"
    make_stack(products, n=8, shape=(64, 64), start=DEMO_START, days=12, flavour="legacy-grd",
               seed=42)  # fmt: skip
    ingest([str(products)], str(tmp_path / "demo" / "catalog"))
    return tmp_path


def _run_script(folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    (folder / "example.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "example.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_readme_python_example_runs_as_a_script(demo_folder: Path) -> None:
    run = _run_script(demo_folder, readme_example())
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "Nanny" not in run.stderr, run.stderr
    assert "time" in run.stdout  # the printed plan and dataset
    ds = open_cube(str(demo_folder / "my_cube.zarr"))
    assert ds.sizes["time"] == 8


def _unguarded(code: str) -> str:
    head, body = code.split('if __name__ == "__main__":\n')
    return head + textwrap.dedent(body)


def test_unguarded_script_stops_with_one_clear_error(demo_folder: Path) -> None:
    """Without the guard, dask's workers would re-run the script: one error names the line instead.

    Only builds that start worker processes need the guard: here every build does, as one of more
    than ``IN_PROCESS_BYTES`` of pixels would.
    """
    guard = 'if __name__ == "__main__":\n'
    unguarded = "import icecube_cloud.cluster\nicecube_cloud.cluster.IN_PROCESS_BYTES = -1\n"
    unguarded += _unguarded(readme_example())
    run = _run_script(demo_folder, unguarded)
    assert run.returncode == 1
    assert run.stderr.count("Traceback") == 1 and "Nanny" not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    line = next(n for n, text in enumerate(unguarded.splitlines(), 1) if "ic.build_cube(" in text)
    assert last.startswith("icecube_cloud.errors.UsageError: ")
    assert f"example.py, line {line}: starts a local dask cluster" in last
    assert guard.strip() in last
    assert not (demo_folder / "my_cube.zarr").exists()


def test_unguarded_script_runs_a_small_build_in_process(demo_folder: Path) -> None:
    """A small build starts no worker process, so a script without the guard runs as written."""
    run = _run_script(demo_folder, _unguarded(readme_example()))
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert open_cube(str(demo_folder / "my_cube.zarr")).sizes["time"] == 8
