"""`icecube-cloud ... --help` says what a user needs to know, defaults included."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from icecube_cloud.cli import cli


@pytest.mark.parametrize("command", ["build", "update", "demo"])
def test_workers_option_shows_its_default(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in result.output.splitlines() if "--workers" in ln]
    assert "[default: one per CPU core" in line, line
