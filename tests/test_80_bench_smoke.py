"""Smoke run of the benchmark suite (``benchmarks/``) on tiny stacks, so that it never rots.

Not a timed test: it checks that one run produces every column with sane values (throughputs > 0,
finite ratios, gap slices storing 0 bytes) and a markdown table.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import run as bench  # the repository root is on pytest's pythonpath


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert (
        bench.main(["--size", "tiny", "--no-fresh", "--no-s3", "--repeat", "2", "--json", str(out)])
        == 0
    )
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0 and math.isfinite(value)


def test_s3_requests_are_counted_per_build(tmp_path: Path) -> None:
    """On S3 each case's requests are counted from the server's log (issue #16 item 5)."""
    out = tmp_path / "bench.json"
    argv = ["--size", "tiny", "--only", "grd", "--no-local", "--no-fresh", "--json", str(out)]
    assert bench.main(argv) == 0
    (row,) = json.loads(out.read_text())["rows"]
    n = row["n_images"]
    # the ceiling reads each file with one GET and writes it with one PUT
    assert row["ceiling_requests"]["GET"] == row["ceiling_requests"]["PUT"] == n
    ours = row["ours_requests"]
    assert ours["PUT"] >= n + 1 and ours["GET"] >= n  # a chunk per image and the root document
    assert sum(row["naive_requests"].values()) > 0
    lines = bench.requests_table([row]).splitlines()
    assert [line.split(" | ")[3] for line in lines[2:]] == ["ours", "ceiling", "naive"]


def test_every_block_and_column(result: dict[str, Any]) -> None:
    rows = result["rows"]
    assert {(r["kind"], r["store"]) for r in rows} == {("grd", "local"), ("slc", "local")}
    for row in rows:
        assert set(row) == set(bench.COLUMNS)
        assert row["size"] == "tiny"
        assert row["raw_bytes"] > 0


def test_ceiling_and_naive_are_measured(result: dict[str, Any]) -> None:
    for row in result["rows"]:
        assert row["repeat"] == 2 and len(row["ceiling_runs_s"]) == len(row["naive_runs_s"]) == 2
        assert row["ceiling_s"] == min(row["ceiling_runs_s"])  # the fastest run is reported
        assert _positive(row["ceiling_mibs"]) and _positive(row["naive_mibs"])
        assert row["naive_stored_bytes"] > 0
        assert row["rss_ceiling"]["workers_mib"] and row["rss_naive"]["client_mib"] > 0


def test_ours_is_measured_or_reported_unsupported(result: dict[str, Any]) -> None:
    for row in result["rows"]:
        if row["kind"] == "grd":
            assert row["ours_status"] == "ok", row["ours_status"]
        if row["ours_status"] != "ok":
            assert row["ours_status"].startswith("not supported"), row["ours_status"]
            continue
        for key in ("ours_mibs", "ratio_ceiling", "ratio_naive", "gap_build_mibs", "open_s"):
            assert _positive(row[key]), (key, row[key])
        runs_c, runs_o = sorted(row["ceiling_runs_s"]), sorted(row["ours_runs_s"])
        medians = (runs_c[0] + runs_c[1]) / (runs_o[0] + runs_o[1])  # two runs each
        assert row["ratio_ceiling_median"] == pytest.approx(medians, abs=1e-3)
        assert row["first_chunk_s"] >= 0
        assert len(row["rss_ours"]["workers_mib"]) >= 1
        assert all(_positive(v) for v in row["rss_ours"]["workers_mib"])
        assert row["stored_bytes"] > 0 and 0 < row["stored_ratio"] < 2


def test_gap_slices_store_nothing(result: dict[str, Any]) -> None:
    for row in result["rows"]:
        if row["ours_status"] == "ok":
            assert row["gap_slices"] == 2 * row["n_images"]
            assert row["gap_bytes"] == 0


def test_table_has_a_line_per_row(result: dict[str, Any]) -> None:
    text = bench.table(result["rows"])
    lines = text.splitlines()
    assert lines[0].startswith("| kind |") and len(lines) == 2 + len(result["rows"])
    assert "loadavg_start" in result["machine"]


def test_verdicts_name_the_targets() -> None:
    row = {"kind": "grd", "size": "large", "store": "s3", "ratio_ceiling": 0.79, "ratio_naive": 3.0}
    assert bench.verdicts([row]) == [
        "large GRD, s3: ours/ceiling 0.79 (target ≥ 0.8), ours/naive 3.00 (target ≥ 2.0): "
        "TARGET MISSED"
    ]
    ok = {**row, "store": "local", "ratio_ceiling": 0.8, "ratio_ceiling_median": 0.75}
    assert bench.verdicts([ok, {**row, "size": "small"}]) == [
        "large GRD, local: ours/ceiling 0.80 (median of runs 0.75) (target ≥ 0.8), ours/naive 3.00 "
        "(target ≥ 2.0): targets met"
    ]
    assert bench.verdicts([{**row, "ratio_ceiling": None}])[0].endswith("TARGET MISSED")


# --- the map-geometry case (benchmarks.bench_map, issue #14) ------------------------------------


@pytest.fixture(scope="module")
def map_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from benchmarks import bench_map

    out = tmp_path_factory.mktemp("bench-map") / "bench-map.json"
    argv = ["--size", "tiny", "--no-fresh", "--resampling", "nearest", "--resampling", "bilinear"]
    assert bench_map.main([*argv, "--json", str(out)]) == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_map_every_case_is_measured(map_result: dict[str, Any]) -> None:
    from benchmarks.bench_map import CASES

    rows = map_result["rows"]
    assert [r["resampling"] for r in rows] == ["nearest", "bilinear"]
    for row in rows:
        assert row["size"] == "tiny" and row["n_images"] == 4 and row["crs"].startswith("EPSG:326")
        for case in CASES:
            c = row["cases"][case]
            assert c["status"] == "ok", (case, c["status"])
            assert _positive(c["mibs"]) and c["s"] == min(c["runs_s"])
            assert all(_positive(v) for v in c["rss"]["workers_mib"])
            assert len(c["rss"]["workers_mib"]) == 2
        assert row["faster_peer"] in ("odc-stac", "stackstac")
        assert _positive(row["ratio_faster_peer"]) and _positive(row["ratio_ceiling"])
    assert map_result["verdicts"] == [r["verdict"] for r in rows]


def test_map_peers_load_the_same_pixels(map_result: dict[str, Any]) -> None:
    """Every peer loaded the products' pixels (not the all-fill cube a wrong transform gives)."""
    for row in map_result["rows"]:
        assert set(row["agreement"]) == {"odc-stac", "stackstac", "ceiling"}
        for case, agree in row["agreement"].items():
            assert agree["data_px"] > 0 and agree["other_px"] > 0.99 * agree["reference_px"], case
            assert 0 <= agree["agree"] <= agree["agree_1dn"] <= 1, case
            if row["resampling"] == "nearest":  # GDAL's default transformer moves a few pixels
                assert agree["agree"] > 0.99, (case, agree)
                assert "WARNING" not in row["verdict"]


def test_map_table_has_a_line_per_row(map_result: dict[str, Any]) -> None:
    from benchmarks.bench_map import table

    lines = table(map_result["rows"]).splitlines()
    assert lines[0].startswith("| size | resampling |") and len(lines) == 2 + 2
    assert lines[2].startswith("| tiny | nearest | 4×128² |")


# --- the training layout case (benchmarks.bench_layout, issue #15 item 9) -----------------------


def test_layout_every_layout_is_measured(tmp_path: Path) -> None:
    from benchmarks import bench_layout

    out = tmp_path / "bench-layout.json"
    argv = ["--n", "2", "--size", "256", "--chunk", "128", "--patch", "32", "--patches", "20"]
    assert bench_layout.main([*argv, "--rounds", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["layout"] for r in rows] == [
        "chunks 128²", "shards 128² / chunks 32²", "shards 128² / chunks 64²", "chunks 32²",
    ]  # fmt: skip
    for row in rows:
        for metric in bench_layout.METRICS:
            assert _positive(row[metric]) and _positive(row[f"{metric}_ratio"]), (row, metric)
            assert len(row[f"{metric}_runs"]) == 2
    assert rows[0]["build_mibs_ratio"] == 1.0
    assert rows[1]["objects"] == rows[0]["objects"] == 2 * 4  # one object per 128² shard
    assert rows[3]["objects"] == 2 * 64
    lines = bench_layout.table(rows).splitlines()
    assert lines[0].startswith("| layout |") and len(lines) == 2 + 4


# --- the patch-loading case (benchmarks.bench_patches, issue #15) -------------------------------


@pytest.fixture(scope="module")
def patches_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # A process of its own, as `make bench-patches` runs it: this test process has run dask computes,
    # after which xbatcher's forked DataLoader workers hang (the state the benchmark documents).
    work = tmp_path_factory.mktemp("bench-patches")
    argv = ["--size", "tiny", "--repeat", "2", "--workdir", str(work)]
    cmd = [sys.executable, "-m", "benchmarks.bench_patches", *argv]
    run = subprocess.run(
        [*cmd, "--json", str(work / "bench-patches.json")],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    data: dict[str, Any] = json.loads((work / "bench-patches.json").read_text())
    return data


def test_patches_every_case_is_measured(patches_result: dict[str, Any]) -> None:
    from benchmarks.bench_patches import PATCH_SIZES, case_names

    (row,) = patches_result["rows"]
    spec = PATCH_SIZES["tiny"]
    assert row["size"] == "tiny" and row["samples"] == spec.samples and row["repeat"] == 2
    assert list(row["cases"]) == case_names()
    for name, case in row["cases"].items():
        assert case["status"] == "ok", (name, case["status"])
        assert _positive(case["patches_per_s"]) and len(case["runs_per_s"]) == 2
        assert case["patches_per_s"] == max(case["runs_per_s"])  # the fastest run is reported
        if name == "xbatcher":  # its own grid: every whole window of the tiny cube
            assert case["patches"] == spec.n * (spec.side // spec.patch) ** 2
        else:  # every one of the N windows, through the loader or the pool
            assert case["patches"] == spec.samples
        if name.startswith(("ours", "xbatcher")):  # two DataLoader workers, each measured
            assert len(case["workers_peak_mib"]) == 2
            assert all(_positive(v) for v in case["workers_peak_mib"])
    for name, value in row["ratios"].items():
        assert _positive(value), name


def test_patches_worker_memory_and_verdicts(patches_result: dict[str, Any]) -> None:
    (row,) = patches_result["rows"]
    flat = row["flat"]
    assert flat["patches"] == [row["samples"], 2 * row["samples"]]
    assert all(len(p) == 2 and all(_positive(v) for v in p) for p in flat["workers_peak_mib"])
    assert isinstance(flat["flat"], bool)
    assert patches_result["verdicts"] == row["verdicts"] and len(row["verdicts"]) == 4
    assert row["verdicts"][0].startswith("tiny, aligned: ours-amplitude/raw-2: paired ")


def test_patches_cube_is_reused(
    patches_result: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from benchmarks.bench_patches import ensure_cube

    (row,) = patches_result["rows"]
    work = Path(row["cube"]).parents[1]
    with caplog.at_level("INFO", logger="benchmarks"):
        assert ensure_cube("tiny", work) == row["cube"]
    assert "reusing the cube" in caplog.text


def test_patches_table_has_a_line_per_case(patches_result: dict[str, Any]) -> None:
    from benchmarks.bench_patches import table

    (row,) = patches_result["rows"]
    lines = table(row).splitlines()
    assert lines[0].startswith("| case | windows |") and len(lines) == 2 + len(row["cases"])
    assert lines[-1].startswith("| xbatcher | grid (aligned) |")


# --- the scale case (benchmarks.bench_scale, issue 16 items 3 and 5) ------------------------------


@pytest.fixture(scope="module")
def scale_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from benchmarks import bench_scale

    out = tmp_path_factory.mktemp("bench-scale") / "bench-scale.json"
    argv = ["--slices", "3", "--slices", "6", "--items", "30", "--store", "s3", "--json", str(out)]
    assert bench_scale.main(argv) == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_scale_every_phase_is_measured(scale_result: dict[str, Any]) -> None:
    rows = scale_result["rows"]
    assert [(r["slices"], r["items"], r["store"]) for r in rows] == [(3, 30, "s3"), (6, 30, "s3")]
    for row in rows:
        phases = row["phases"]
        assert set(phases) == {"build", "ingest 1", "update", "open"}
        for step in ("search", "plan", "source check", "skeleton", "band tasks", "commit"):
            assert phases["build"][step]["calls"] >= 1, step
            assert phases["build"][step]["s"] >= 0
        assert set(phases["update"]) >= {"search", "read cube", "band tasks", "commit"}
        assert phases["open"]["open_cube"]["requests"]["GET"] > 0


def test_scale_requests_grow_with_slices_not_items(scale_result: dict[str, Any]) -> None:
    """The claims of the README's scale table, as request counts (deterministic)."""
    small, large = scale_result["rows"]
    for row in (small, large):
        n, build, update = row["slices"], row["phases"]["build"], row["phases"]["update"]
        # the search reads the catalog, the collection, its index and the n selected items only
        assert build["search"]["requests"] == {"GET": n + 3, "HEAD": 2}
        assert update["search"]["requests"]["GET"] == n + 4  # and the new one
        assert build["band tasks"]["requests"]["PUT"] == 2 * n  # a chunk and a marker per image
    # adding one image costs the same requests at any length, but for its search
    for phase in ("update", "ingest 1", "open"):
        for step, cost in large["phases"][phase].items():
            if step != "search":
                assert cost["requests"] == small["phases"][phase][step]["requests"], (phase, step)

    def total(row: dict[str, Any], step: str) -> int:
        return sum(row["phases"]["build"][step]["requests"].values())

    added = large["slices"] - small["slices"]
    # today's cost per image (README), a bound that a regression to O(items) or O(n²) breaks
    for step, per_image in (("source check", 3), ("band tasks", 6)):
        assert 0 < total(large, step) - total(small, step) <= per_image * added, step
    assert total(large, "skeleton") == total(small, "skeleton")
    k = {(g["phase"], g["step"]): g["k_requests"] for g in scale_result["growth"]}
    assert k[("build", "skeleton")] == k[("build", "commit")] == 0


def test_scale_request_classes() -> None:
    from benchmarks.steps import classify

    assert classify("GET", "/bench/cube.zarr/zarr.json") == "GET"
    assert classify("GET", "/bench?list-type=2&prefix=x/") == "LIST"
    assert classify("POST", "/bench?delete") == "DELETE"
    assert classify("HEAD", "/bench/a") == "HEAD"
    assert classify("PUT", "/bench/a?partNumber=1&uploadId=x") == "PUT"


# --- virtual cubes: JSON against Parquet references (benchmarks.bench_virtual, issue 16 item 4) ----


def test_virtual_references_json_and_parquet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import bench_virtual

    argv = ["--n", "3", "--size", "32", "--workers", "1", "--flavour", "legacy-grd"]
    argv += ["--references", "json", "--references", "parquet", "--crossover", "1"]
    assert bench_virtual.main([*argv, "--crossover", "4", "--workdir", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| flavour | format |") and len(lines) == 2 + 2 + 2 + 2
    assert lines[2].startswith("| legacy-grd | json | 3 | 32x32 | 3 |")
    assert lines[3].startswith("| legacy-grd | parquet | 3 | 32x32 | 3 |")
    assert lines[4].startswith("| chunk references |")
    assert [line.split("|")[1].strip() for line in lines[6:]] == ["3", "12"]  # 3 products × F
    assert (tmp_path / "legacy-grd" / "cube.parq" / ".zmetadata").is_file()


# --- the fixed-cost case (benchmarks.bench_fixed, issue #16 item 1) ---------------------------------


def test_fixed_cost_benchmark_runs_every_case_whole_process(tmp_path, capsys):
    from benchmarks import bench_fixed

    assert bench_fixed.main(["--size", "tiny", "--repeat", "1", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for case in ("ours", "ours-processes", "ours-in-process", "naive", "ratio_naive_best"):
        assert f'"{case}"' in out
