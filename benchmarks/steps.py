"""Per-step wall time and object-storage request counts of one build or update, measured from outside.

**Requests** are counted on the server side, from the access log of ``moto_server`` (one line per
HTTP request, written when the response starts): client and worker processes alike are counted, with
no hook in the code measured. A request is classed by method and query: ``GET`` of an object,
``LIST`` (``GET`` of a bucket with ``list-type=``), ``HEAD``, ``PUT`` (objects and multipart parts),
``DELETE`` (``DELETE`` of an object, or one batch ``POST ?delete``), ``POST`` (anything else).

**Steps** are named functions of the pipeline, wrapped for the duration of a block
(:class:`StepRecorder`): each call's wall time and the requests logged meanwhile go to its step,
*exclusive* of the wrapped calls nested in it (the plan step does not count the search inside it), and
what the outermost call spends outside every named function is its own step (``other``). Worker tasks
run while the client waits in ``gather_futures``, so their requests count in the step of that wait
(``source check`` or ``band tasks``, by the stage the wait reports).
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("GET", "PUT", "LIST", "HEAD", "DELETE", "POST")
"""Request classes, in table order."""
_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/')


def classify(method: str, target: str) -> str:
    """The class of one S3 request (see the module docstring)."""
    path, _, query = target.partition("?")
    if method == "GET" and ("list-type=" in query or path.strip("/").count("/") == 0):
        return "LIST"
    if method == "POST" and (query == "delete" or query.startswith("delete&")):
        return "DELETE"
    return method if method in KINDS else "POST"


class RequestLog:
    """Counts of the requests in a ``moto_server`` log, read incrementally from ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._counts: Counter[str] = Counter()

    def counts(self) -> Counter[str]:
        """Requests logged so far, by class (a copy)."""
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a half-written last line is read next time
        self._offset += end
        for line in data[:end].decode("utf-8", "replace").splitlines():
            m = _LINE.search(line)
            if m and not m.group(2).startswith("/moto-api"):
                self._counts[classify(m.group(1), m.group(2))] += 1
        return Counter(self._counts)


@dataclass
class Step:
    """What one step cost (summed over its calls)."""

    seconds: float = 0.0
    calls: int = 0
    requests: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "s": round(self.seconds, 4),
            "calls": self.calls,
            "requests": {k: self.requests[k] for k in KINDS if self.requests[k]},
        }


@dataclass
class _Frame:
    step: str
    t0: float
    r0: Counter[str]
    child_s: float = 0.0
    child_r: Counter[str] = field(default_factory=Counter)


class StepRecorder:
    """Wraps named functions and attributes their cost to steps (exclusive of nested ones).

    Args:
        requests: The server's request log (``None``: local store, no requests counted).
    """

    def __init__(self, requests: RequestLog | None) -> None:
        self._requests = requests
        self._stack: list[_Frame] = []
        self.steps: dict[str, Step] = {}

    def _now(self) -> tuple[float, Counter[str]]:
        return time.perf_counter(), self._requests.counts() if self._requests else Counter()

    def _enter(self, step: str) -> None:
        t, r = self._now()
        self._stack.append(_Frame(step, t, r))

    def _exit(self) -> None:
        t, r = self._now()
        frame = self._stack.pop()
        spent_s, spent_r = t - frame.t0, r - frame.r0
        step = self.steps.setdefault(frame.step, Step())
        step.seconds += spent_s - frame.child_s
        step.calls += 1
        step.requests.update(spent_r - frame.child_r)
        if self._stack:
            self._stack[-1].child_s += spent_s
            self._stack[-1].child_r.update(spent_r)

    def _wrapper(
        self, fn: Callable[..., Any], step: str | Callable[..., str]
    ) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self._enter(step(*args, **kwargs) if callable(step) else step)
            try:
                return fn(*args, **kwargs)
            finally:
                self._exit()

        return wrapped

    @contextmanager
    def watching(
        self, targets: Mapping[tuple[Any, str], str | Callable[..., str]]
    ) -> Iterator[StepRecorder]:
        """Wrap ``(owner, attribute) -> step`` for the block (a callable step names it per call)."""
        saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
        try:
            for (owner, name), step in targets.items():
                setattr(owner, name, self._wrapper(getattr(owner, name), step))
            yield self
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)

    def call(self, step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` as the outermost call of ``step`` (what nothing nested claims goes to it)."""
        return self._wrapper(fn, step)(*args, **kwargs)
