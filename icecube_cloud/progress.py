"""Progress reporting for long work: a pluggable callback, and the adapters that draw it.

Library code reports through a callback; it never draws by itself. A public long-running function
takes ``progress`` as ``False`` (silent, the default), ``True`` (``tqdm.auto`` bars: widgets in
notebooks, text on stderr elsewhere) or a callable ``progress(stage, done, total)``; it calls
:func:`resolve_progress` once. A callable that also accepts a keyword ``nbytes`` receives the
uncompressed bytes done so far where they are known (``write``, ``export``). The CLI draws with
:class:`RichBars` on a terminal and :class:`PlainLines` otherwise (``console.CliProgress``). These
adapters are the only code outside the CLI that writes to stderr, and only when asked to.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

MIB = 2**20

STAGE_UNITS = {
    "plan": "steps",
    "synthesise": "products",
    "read": "files",
    "check": "products",
    "reference": "products",
    "write": "tasks",
    "export": "chunks",
    "predict": "slices",
}
"""What a stage counts (tasks of ``write`` are band tasks and label slices)."""


class Progress(Protocol):
    """Called as work advances: ``stage`` names the step, ``done`` of ``total`` units are finished."""

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Report that ``done`` of ``total`` units of ``stage`` are finished."""
        ...


def no_progress(stage: str, done: int, total: int) -> None:
    """A progress callback that reports nothing."""


def unit_of(stage: str) -> str:
    """The unit a stage counts in (``items`` for stages not in :data:`STAGE_UNITS`)."""
    return STAGE_UNITS.get(stage, "items")


class Reporter:
    """What the long operations call: ``(stage, done, total, nbytes=None)``; silent as it is.

    ``nbytes`` is the uncompressed bytes done so far in ``stage`` (``None``: not known). Callers
    measure bytes only when :attr:`wants_bytes` is true.
    """

    wants_bytes = False

    def __call__(self, stage: str, done: int, total: int, *, nbytes: int | None = None) -> None:
        """Report ``done`` of ``total`` units (and ``nbytes`` bytes) of ``stage``."""

    def close(self) -> None:
        """End any bar still drawn (after an error, say)."""


class _Callback(Reporter):
    """A user's callable: three arguments, plus ``nbytes=`` when its signature accepts it."""

    def __init__(self, fn: Callable[..., Any], with_bytes: bool) -> None:
        self.fn = fn
        self.wants_bytes = with_bytes

    def __call__(self, stage: str, done: int, total: int, *, nbytes: int | None = None) -> None:
        if self.wants_bytes:
            self.fn(stage, done, total, nbytes=nbytes)
        else:
            self.fn(stage, done, total)


def _accepts_nbytes(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the three-argument form
        return False
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD or (p.name == "nbytes" and p.kind in keyword)
        for p in params
    )


def resolve_progress(progress: bool | Progress | Reporter | None) -> Reporter:
    """The :class:`Reporter` for a ``progress`` argument: ``True`` tqdm bars, ``False``/``None`` none."""
    if isinstance(progress, Reporter):
        return progress
    if progress is True:
        return TqdmBars()
    if progress is None or progress is False or progress is no_progress:
        return Reporter()
    return _Callback(progress, _accepts_nbytes(progress))


def _amount(done: int, total: int, stage: str, nbytes: int | None, seconds: float) -> str:
    """``3/8 tasks, 12.0 MiB at 4.1 MiB/s`` (the bytes part only when they are known)."""
    text = f"{done}/{total} {unit_of(stage)}"
    if nbytes is not None:
        text += f", {nbytes / MIB:.1f} MiB at {nbytes / MIB / max(seconds, 1e-6):.1f} MiB/s"
    return text


class PlainLines(Reporter):
    """One line per stage at its start, at most every ``every`` seconds, and at its end (logs, CI)."""

    wants_bytes = True

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._start: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int, *, nbytes: int | None = None) -> None:
        """Write ``stage: done/total unit[, bytes at rate]`` when due."""
        now = time.monotonic()
        if done == 0 or stage not in self._start:  # a stage (re)starts
            self._start[stage] = now
            self._last.pop(stage, None)
        start = self._start[stage]
        if done >= total or now - self._last.get(stage, -self.every) >= self.every:
            self._last[stage] = now
            line = f"{stage}: {_amount(done, total, stage, nbytes, now - start)}\n"
            sys.stderr.write(line)
            sys.stderr.flush()


class TqdmBars(Reporter):
    """``tqdm.auto`` bars, one per stage: notebook widgets, or text on stderr."""

    wants_bytes = True

    def __init__(self) -> None:
        self._stage = ""
        self._bar: Any = None
        self._start = 0.0

    def __call__(self, stage: str, done: int, total: int, *, nbytes: int | None = None) -> None:
        """Advance the stage's bar (a new stage closes the previous bar)."""
        from tqdm.auto import tqdm

        if stage != self._stage or self._bar is None:
            self.close()
            self._stage, self._start = stage, time.monotonic()
            self._bar = tqdm(total=total, desc=stage, unit=f" {unit_of(stage)}", file=sys.stderr)
        bar = self._bar
        bar.total = total
        if nbytes is not None:
            rate = nbytes / MIB / max(time.monotonic() - self._start, 1e-6)
            bar.set_postfix_str(f"{nbytes / MIB:.1f} MiB, {rate:.1f} MiB/s", refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        """Close the current bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class RichBars(Reporter):
    """``rich`` bars on the terminal of stderr, one per stage: count, bytes, rate, ETA.

    Each stage's bar is live from its first report to its end and then stays on screen as its last
    state, so that what a command prints afterwards (stdout) never interleaves with a redraw.
    """

    wants_bytes = True

    def __init__(self, console: Any = None) -> None:
        self._console = console
        self._stage = ""
        self._bars: Any = None
        self._task: Any = None

    def __call__(self, stage: str, done: int, total: int, *, nbytes: int | None = None) -> None:
        """Advance the stage's bar (a new stage stops the previous one)."""
        if stage != self._stage or self._bars is None:
            self.close()
            self._stage = stage
            self._bars = _rich_progress(self._console)
            self._bars.start()
            self._task = self._bars.add_task(stage, total=total, unit=unit_of(stage), nbytes=nbytes)
        self._bars.update(self._task, completed=done, total=total, nbytes=nbytes)
        if done >= total:
            self.close()

    def close(self) -> None:
        """Close the current bar."""
        if self._bars is not None:
            self._bars.stop()
            self._bars = None


def _rich_progress(console: Any) -> Any:
    """A ``rich.progress.Progress`` with our columns (rich is imported only when bars are drawn)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
    from rich.text import Text

    def clock(seconds: float | None) -> str:
        if seconds is None:
            return "-:--:--"
        s = int(seconds)
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"

    class Count(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{int(task.completed)}/{int(task.total or 0)} {task.fields['unit']}")

    class Rate(ProgressColumn):  # over the stage so far: MiB/s where bytes are known, else units/s
        def render(self, task: Task) -> Text:
            nbytes, seconds = task.fields.get("nbytes"), task.finished_time or task.elapsed
            if nbytes is not None:
                rate = f"{nbytes / MIB / seconds:.1f}" if seconds else "?"
                return Text(f"{nbytes / MIB:.1f} MiB  {rate} MiB/s")
            speed = f"{task.completed / seconds:.1f}" if seconds and task.completed else "?"
            return Text(f"{speed} {task.fields['unit']}/s")

    class Eta(ProgressColumn):
        def render(self, task: Task) -> Text:
            if task.finished:
                return Text(f"took {clock(task.finished_time)}")
            return Text(f"eta {clock(task.time_remaining)}")

    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(bar_width=30),
        Count(),
        Rate(),
        Eta(),
        console=console if console is not None else Console(stderr=True),
        redirect_stdout=False,  # stdout stays the command's output
    )
