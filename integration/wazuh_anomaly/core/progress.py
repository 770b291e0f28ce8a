"""Progress of long work (training, backtests, reports, learning), for a person at a terminal.

The library marks its steps with `steps(...)`; nothing is shown unless the command line
turned progress on with `show_on(stream)`, which it does only when stderr is a terminal
and -q was not given. So the wodle (no terminal; its output is thrown away) and tests see
nothing, and a pipe (`... 2>errors.txt`) gets no control characters.

On a terminal one line is rewritten in place ("\\r" and erase-to-end) with every task
that is running, outermost first, and erased when the outermost task ends, so that the
results printed afterwards stand alone:

    training 2/5 alert_volume · mvad 1/2 · scoring entities 37/200
"""
from __future__ import annotations

import contextlib
import shutil
import time
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

_stream: TextIO | None = None
_running: list["Steps"] = []
_last_draw = 0.0
REDRAW_SECONDS = 0.1     # a tight loop redraws ten times a second, not a million


def show_on(stream: TextIO | None) -> None:
    """Show progress on this stream from now on (None: show nothing, the default)."""
    global _stream
    _stream = stream


def showing() -> bool:
    return _stream is not None


class Steps:
    """One task of `total` steps (None: an open count, e.g. alerts read)."""

    def __init__(self, what: str, total: int | None) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.detail = ""

    def step(self, detail: str = "", *, by: int = 1) -> None:
        """Mark the start of the next step (detail: what it works on), or `by` more items done."""
        self.done += by
        if _stream is not None:     # cheap when nobody looks: called once per alert read
            self.detail = detail
            _draw()

    def describe(self) -> str:
        count = f" {self.done}/{self.total}" if self.total is not None else f" {self.done}"
        return f"{self.what}{count}" + (f" {self.detail}" if self.detail else "")


@contextlib.contextmanager
def steps(what: str, total: int | None = None) -> Iterator[Steps]:
    task = Steps(what, total)
    _running.append(task)
    _draw(force=True)
    try:
        yield task
    finally:
        _running.remove(task)
        if not _running:
            _erase()
        else:
            _draw(force=True)


def each(items: Iterable[T], what: str, *, detail: Callable[[T], str] | None = None) -> Iterator[T]:
    """The items, one step each: `for name in each(names, "drawing", detail=str)`."""
    items = list(items)
    with steps(what, len(items)) as task:
        for item in items:
            task.step(detail(item) if detail else "")
            yield item


def _draw(*, force: bool = False) -> None:
    global _last_draw
    if _stream is None or not _running:
        return
    now = time.monotonic()
    if not force and now - _last_draw < REDRAW_SECONDS:
        return
    _last_draw = now
    width = shutil.get_terminal_size((80, 24)).columns - 1
    text = " · ".join(task.describe() for task in _running)
    if len(text) > width:
        text = text[:max(width - 1, 0)] + "…"
    try:
        _stream.write(f"\r\x1b[K{text}")
        _stream.flush()
    except (OSError, ValueError):   # a closed terminal must not stop the work
        pass


def interrupt() -> None:
    """Erase the progress line before another message goes to the same terminal; the
    next step draws it again below that message."""
    if _running:
        _erase()


def _erase() -> None:
    global _last_draw
    _last_draw = 0.0
    if _stream is None:
        return
    try:
        _stream.write("\r\x1b[K")
        _stream.flush()
    except (OSError, ValueError):
        pass
