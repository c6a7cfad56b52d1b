"""Memory flat in stack length (issue #6.3): a cube several times a worker's memory limit.

Not timed. Runs ``python -m benchmarks.memory`` (its own LocalClusters, built as ``icecube_cloud.cluster``
builds them) in a child process, so that a worker that dask pauses for memory makes this test fail on
the deadline instead of hanging the suite. Workers are capped at 512 MiB (dask spills at 60 % of it,
pauses a worker at 80 % and kills it at 95 %); the cube holds 1.5 GiB of pixels, 3 times one worker's
limit and 1.5 times the whole cluster's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from dask.utils import parse_bytes

REPO = Path(__file__).resolve().parents[1]
LIMIT = "512MiB"
N = 24


def test_peak_worker_memory_does_not_grow_with_the_number_of_images(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    args = ["--n", "4", str(N), "--shape", "4096", "8192", "--limit", LIMIT, "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    small, large = result["runs"]
    assert (small["n_images"], large["n_images"]) == (4, N)
    assert large["pixel_mib"] == N * 4096 * 8192 * 2 / 2**20
    assert large["pixel_mib"] * 2**20 >= 3 * parse_bytes(LIMIT)  # several times a worker's limit
    for run in (small, large):
        assert not run["workers_replaced"], run  # no worker died
        assert run["spilled_bytes"] == 0, run  # nothing was spilled to disk (60 % of the limit)
        # below dask's pause threshold (80 %): a paused worker would stall the build
        assert max(run["peak_rss_workers_mib"]) < 0.8 * parse_bytes(LIMIT) / 2**20, run
    assert max(large["peak_rss_workers_mib"]) <= 1.1 * max(small["peak_rss_workers_mib"]), result
    assert result["flat"]
