"""The notebooks run, top to bottom, against real local services (moto S3 + pgstac API), so they never rot.

The fixture does what a data provider does: products uploaded to a bucket, registered in the STAC API.
The notebooks then search (01), build into the bucket (02) and read the cube lazily over S3 (03).
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import nbformat
import pytest
from nbclient import NotebookClient

from icecube_cloud.ingest import ingest
from icecube_cloud.synthetic import make_stack

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def services(tmp_path_factory, moto_s3, stac_api):
    local = tmp_path_factory.mktemp("nb-products")
    make_stack(
        local, n=8, shape=(128, 96), start=datetime(2021, 4, 20, 21, 51, tzinfo=UTC), days=12,
        flavour="legacy-grd", seed=5,
    )  # fmt: skip
    bucket = moto_s3.make_bucket("icecube-notebooks")
    fs = fsspec.filesystem("s3", **dict(moto_s3.storage_options))
    fs.put(str(local) + "/", f"{bucket}/products/", recursive=True)
    ingest([f"{bucket}/products/"], stac_api, storage_options=moto_s3.storage_options)
    return {
        **moto_s3.env,
        "ICECUBE_STAC_URL": stac_api,
        "ICECUBE_CUBE_URL": f"{bucket}/cubes/notebook.zarr",
    }


def test_notebooks_run_in_order(services, tmp_path, monkeypatch):
    """01 searches, 02 builds the cube that 03 opens: they run as one story, in order."""
    for key, value in services.items():
        monkeypatch.setenv(key, value)
    for name in ("01_search_catalog.ipynb", "02_build_cube.ipynb", "03_open_cube_over_s3.ipynb"):
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        client = NotebookClient(
            notebook,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute()  # raises CellExecutionError naming the cell on the first failure
        outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], name


def test_demo_cloud(tmp_path, stac_api):
    """`make demo-cloud`: the CLI starts moto + a STAC API itself, builds into the bucket, reads it back.

    (``stac_api`` only guarantees that PostgreSQL/PostGIS are installed; the demo runs its own services.)
    """
    exe = Path(sys.executable).parent / "icecube-cloud"
    r = subprocess.run(
        [str(exe), "demo", "--cloud", "--workdir", str(tmp_path), "--size", "64", "--images", "6"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "time: 6 slices, 6 images, 0 gaps" in r.stdout
    assert "status: complete" in r.stdout and "opened over S3" in r.stdout


def _run_local(path: Path, workdir: Path, *, timeout: int) -> list[dict[str, Any]]:
    """Execute a notebook in ``workdir``; its code cells' outputs, none of them an error."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )  # fmt: skip
    client.execute()  # raises CellExecutionError naming the cell on the first failure
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"], path.name
    return outputs


def test_map_cube_notebook(tmp_path):
    """05: a map-geometry cube of a non-coregistered stack with labels, on a lon/lat plot (local only)."""
    outputs = _run_local(NOTEBOOKS / "05_map_cube_with_labels.ipynb", tmp_path, timeout=300)
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the lon/lat figure


def test_train_notebook(tmp_path):
    """04: build → split → train on the CPU → validation IoU above the all-background baseline (the
    notebook asserts it) → predictions back into a cube, shown next to the labels."""
    outputs = _run_local(NOTEBOOKS / "04_train.ipynb", tmp_path, timeout=600)
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    iou, baseline = (
        float(v)
        for v in re.findall(r"mean IoU ([\d.]+) \(all-background baseline ([\d.]+)\)", text)[0]
    )
    assert iou > baseline + 0.15
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # data + labels, predictions
