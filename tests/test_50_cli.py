"""The ``icecube-cloud`` command line as a user runs it: real processes, exit codes, messages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from helpers import write_good_and_broken

from icecube_cloud.stac.static import StaticCatalog
from icecube_cloud.synthetic import expected_pixels, make_stack

EXE = str(Path(sys.executable).parent / "icecube-cloud")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def stack(tmp_path):
    specs = make_stack(
        tmp_path / "products",
        n=6,
        shape=(40, 30),
        start=datetime(2021, 4, 20, tzinfo=UTC),
        days=12,
        flavour="legacy-grd",
        seed=7,
    )
    return tmp_path, specs


def test_ingest_search_build_info(stack, dask_scheduler):
    tmp, specs = stack
    r = run("catalog", "ingest", str(tmp / "products"), "--stac-url", str(tmp / "cat"))
    assert r.returncode == 0, r.stderr
    assert "6 added" in r.stdout
    r = run("catalog", "ingest", str(tmp / "products"), "--stac-url", str(tmp / "cat"))
    assert r.returncode == 0 and "0 added, 6 updated" in r.stdout  # re-ingest never duplicates

    cfg = tmp / "cfg.json"
    cfg.write_text(json.dumps({"start_date": "20210420", "end_date": "20210502"}))
    r = run("search", "--stac-url", str(tmp / "cat"), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert all(s.product_id in r.stdout for s in specs)

    r = run(
        "build",
        "--stac-url",
        str(tmp / "cat"),
        "--config",
        str(cfg),
        "--out",
        str(tmp / "cube.zarr"),
        "--scheduler",
        dask_scheduler,
    )
    assert r.returncode == 0, r.stderr
    assert "6 time slices" in r.stdout
    assert "write: " in r.stderr  # progress is shown ...
    r2 = run(
        "build",
        "--stac-url",
        str(tmp / "cat"),
        "--config",
        str(cfg),
        "--out",
        str(tmp / "cube2.zarr"),
        "--scheduler",
        dask_scheduler,
        "--quiet",
    )
    assert r2.returncode == 0 and "write: " not in r2.stderr  # ... unless --quiet

    ds = xr.open_zarr(tmp / "cube.zarr")
    for t, pid in enumerate(ds["product_id"].values):
        spec = next(s for s in specs if s.product_id == pid)
        np.testing.assert_array_equal(
            ds["amplitude"].isel(time=t).values, expected_pixels(spec, "GRD")
        )

    r = run("info", str(tmp / "cube.zarr"))
    assert r.returncode == 0, r.stderr
    assert "time: 6 slices, 6 images, 0 gaps" in r.stdout and "status: complete" in r.stdout


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"start_dat": "20210101"}, "start_date"),  # unknown key, closest name suggested
        ({"temporal_resolution": 0.5}, "temporal_resolution"),
        ({"temporal_overlap": "False"}, "temporal_overlap"),
        ({"start_date": "20210502", "end_date": "20210420"}, "end_date"),
    ],
)
def test_bad_config_exits_2_naming_the_key(stack, config, key):
    tmp, _ = stack
    assert (
        run("catalog", "ingest", str(tmp / "products"), "--stac-url", str(tmp / "cat")).returncode
        == 0
    )
    cfg = tmp / "cfg.json"
    cfg.write_text(json.dumps(config))
    r = run(
        "build",
        "--stac-url",
        str(tmp / "cat"),
        "--config",
        str(cfg),
        "--out",
        str(tmp / "cube.zarr"),
    )
    assert r.returncode == 2, r.stderr
    assert key in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp / "cube.zarr").exists()


def test_data_errors_exit_1_naming_the_file(stack):
    tmp, _ = stack
    bad = tmp / "products" / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 50)
    r = run("catalog", "ingest", str(tmp / "products"), "--stac-url", str(tmp / "cat"))
    assert r.returncode == 1
    assert "broken.tif" in r.stderr and "Traceback" not in r.stderr

    r = run("search", "--stac-url", str(tmp / "nowhere"), "--config", str(tmp / "missing.json"))
    assert r.returncode in (1, 2) and ("missing.json" in r.stderr or "nowhere" in r.stderr)

    r = run("info", str(tmp / "no-cube.zarr"))
    assert r.returncode == 1 and "no-cube.zarr" in r.stderr


def test_ingest_names_every_broken_product_and_registers_the_rest(tmp_path):
    """Good products mixed with broken ones: the same answer on every run, never a silent skip."""
    products, cat = tmp_path / "products", tmp_path / "cat"
    good, bad = write_good_and_broken(products)
    runs = [run("catalog", "ingest", str(products), "--stac-url", str(cat), "-q") for _ in range(2)]
    for r in runs:
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == len(bad), r.stderr  # one line per bad file, nothing else
        for name, reason in bad.items():
            line = next(x for x in lines if x.startswith(f"error: {products / name}: "))
            assert re.search(reason, line), line
        assert f"({len(good)} products), {len(bad)} failed" in r.stdout
    assert runs[0].stderr == runs[1].stderr
    assert f"{len(good)} added, 0 updated" in runs[0].stdout
    assert f"0 added, {len(good)} updated" in runs[1].stdout
    assert sorted(i.id for i in StaticCatalog.open(str(cat)).items()) == sorted(good)

    r = run("catalog", "ingest", str(products), "--stac-url", str(tmp_path / "cat2"), "--skip-bad")
    assert r.returncode == 0, r.stderr
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == len(bad) and "error:" not in r.stderr
    assert f"{len(good)} added" in r.stdout
    assert sorted(i.id for i in StaticCatalog.open(str(tmp_path / "cat2")).items()) == sorted(good)


def test_usage_errors_exit_2(tmp_path):
    assert run("build").returncode == 2
    assert run("frobnicate").returncode == 2


def test_demo_builds_a_cube(tmp_path):
    r = run(
        "demo",
        "--workdir",
        str(tmp_path / "demo"),
        "--images",
        "6",
        "--size",
        "64",
        "--workers",
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert "6 images" in r.stdout
    ds = xr.open_zarr(tmp_path / "demo" / "cube.zarr")
    assert ds.sizes["time"] == 6 and ds["amplitude"].dtype == np.uint16


def test_readme_commands_with_relative_paths(stack, dask_scheduler):
    """The issue's own recipe: ingest a folder into ./cat, build ./cube.zarr, open it with xarray."""
    tmp, specs = stack
    (tmp / "cfg.json").write_text("{}")
    assert run("catalog", "ingest", "products", "--stac-url", "./cat", cwd=tmp).returncode == 0
    r = run(
        "build",
        "--stac-url",
        "./cat",
        "--config",
        "cfg.json",
        "--out",
        "./cube.zarr",
        "--scheduler",
        dask_scheduler,
        cwd=tmp,
    )
    assert r.returncode == 0, r.stderr
    ds = xr.open_zarr(tmp / "cube.zarr")
    assert sorted(str(p) for p in ds["product_id"].values) == sorted(s.product_id for s in specs)


def test_selection_errors_exit_1(stack, dask_scheduler):
    tmp, _ = stack
    make_stack(
        tmp / "other",
        n=2,
        shape=(40, 31),
        start=datetime(2021, 6, 1, tzinfo=UTC),
        days=2,
        flavour="legacy-grd",
        seed=8,
    )
    assert (
        run(
            "catalog",
            "ingest",
            str(tmp / "products"),
            str(tmp / "other"),
            "--stac-url",
            str(tmp / "cat"),
        ).returncode
        == 0
    )
    cfg = tmp / "cfg.json"
    cfg.write_text("{}")
    r = run(
        "build",
        "--stac-url",
        str(tmp / "cat"),
        "--config",
        str(cfg),
        "--out",
        str(tmp / "c.zarr"),
        "--scheduler",
        dask_scheduler,
    )
    assert r.returncode == 1
    assert "40x30" in r.stderr and "40x31" in r.stderr and "Traceback" not in r.stderr
    cfg.write_text(json.dumps({"start_date": "20300101"}))
    r = run(
        "build",
        "--stac-url",
        str(tmp / "cat"),
        "--config",
        str(cfg),
        "--out",
        str(tmp / "c.zarr"),
        "--scheduler",
        dask_scheduler,
    )
    assert r.returncode == 1, r.stderr
    assert "the search found no item" in r.stderr and str(tmp / "cat") in r.stderr
    assert not (tmp / "c.zarr").exists()


def test_worker_failure_is_one_error_line_without_verbose(stack):
    """A task that fails in a worker process of the CLI's own cluster: no dask log, no traceback."""
    tmp, specs = stack
    assert (
        run("catalog", "ingest", str(tmp / "products"), "--stac-url", str(tmp / "cat")).returncode
        == 0
    )
    # After ingest, the product file is replaced by another image of the same name (one row more).
    (other,) = make_stack(
        tmp / "other", n=1, shape=(41, 30), start=specs[0].acquisition_end, flavour="legacy-grd"
    )
    changed = tmp / "products" / f"{specs[0].product_id}.tif"
    changed.write_bytes((tmp / "other" / f"{other.product_id}.tif").read_bytes())
    (tmp / "cfg.json").write_text("{}")
    cat, cfg = str(tmp / "cat"), str(tmp / "cfg.json")
    build = ("build", "--stac-url", cat, "--config", cfg, "--workers", "1", "-q")
    r = run(*build, "--out", str(tmp / "cube.zarr"))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"error: {changed}: image is 41x30 but item '{specs[0].product_id}' says 40x30"
    ]
    r = run(*build, "--out", str(tmp / "cube2.zarr"), "--verbose")
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "Compute Failed" in r.stderr
    assert r.stderr.splitlines()[-1].startswith(f"error: {changed}: image is 41x30")


def test_config_warning_is_one_clean_line(stack, dask_scheduler):
    tmp, _ = stack
    assert (
        run("catalog", "ingest", str(tmp / "products"), "--stac-url", str(tmp / "cat")).returncode
        == 0
    )
    cfg = tmp / "cfg.json"
    cfg.write_text(json.dumps({"space_overlap": True, "coregistered": True}))
    cat, out, sched = str(tmp / "cat"), str(tmp / "cube.zarr"), dask_scheduler
    r = run(
        "build", "--stac-url", cat, "--config", str(cfg), "--out", out, "--scheduler", sched, "-q"
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "warning: config key 'space_overlap' is accepted for icecube compatibility and ignored"
    ]
    r = run("search", "--stac-url", str(tmp / "cat"), "--config", str(cfg), "--verbose")
    assert r.returncode == 0, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if "space_overlap" in ln]
    assert (
        line.startswith("warning: config key 'space_overlap'") and "IgnoredConfigKeyWarning" in line
    )


def test_export_writes_netcdf_and_refuses_to_overwrite(slc_cube, tmp_path):
    out = tmp_path / "cube.nc"
    r = run("export", slc_cube, str(out))
    assert r.returncode == 0, r.stderr
    assert f"{out}: labels, slc" in r.stdout
    assert "export: 6/6" in r.stderr  # progress in chunks (not a terminal: one line at the end)
    nc = xr.open_dataset(out)
    assert nc["slc"].dtype == np.complex64
    assert nc["slc"].values.tobytes() == xr.open_zarr(slc_cube)["slc"].values.tobytes()
    before = out.read_bytes()

    r = run("export", slc_cube, str(out), "--quiet")
    assert r.returncode == 2
    assert (
        r.stderr
        == f"error: {out}: exists; export never overwrites (remove it or choose another name)\n"
    )
    assert out.read_bytes() == before

    missing = tmp_path / "missing.zarr"
    r = run("export", str(missing), str(tmp_path / "other.nc"), "-q")
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {missing}: not a complete cube")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.nc"]
