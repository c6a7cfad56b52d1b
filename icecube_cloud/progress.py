"""Progress reporting for long work, as a pluggable callback (the CLI draws it; libraries stay quiet)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Called as work advances: ``stage`` names the step, ``done`` of ``total`` units are finished."""

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Report that ``done`` of ``total`` units of ``stage`` are finished."""
        ...


def no_progress(stage: str, done: int, total: int) -> None:
    """A progress callback that reports nothing."""
