"""What every parser shares: the record it yields, a monotonic step clock, and a line reader that
streams a file from a byte offset so that a growing log is parsed only once.

A parser is resumable: everything it needs to continue where it stopped (byte offset, line
number, step clock, CSV header...) is in ``state``, a JSON-able dict kept in run.json.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20
MAX_LINE = 16 << 20
MAX_ERRORS = 50  # kept per ingest; later ones are only counted
# Lines that say the training process died: Python's header of an uncaught exception, torch's
# out-of-memory error, a native crash. A training row after one (a caught error, a restart) clears it.
CRASH_MARKERS = ("Traceback (most recent call last)", "CUDA out of memory", "OutOfMemoryError",
                 "Segmentation fault", "core dumped")  # fmt: skip
CRASH_TEXT_CHARS = 200


@dataclass(slots=True)
class Row:
    """The values a log wrote at one step, under their names in the source (see keys.py)."""

    step: int
    values: dict[str, float]
    line: int = 0
    epoch: float | None = None
    wall: float | None = None  # unix seconds, when the log says it


def to_float(value: Any) -> float | None:
    """A finite or non-finite float from a JSON/CSV/text value; None when it is not a number."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip().rstrip("%")
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


def to_step(value: Any) -> int | None:
    number = to_float(value)
    if number is None or not math.isfinite(number) or abs(number) > 2**62:
        return None
    return int(number)


_STAMP = re.compile(r"(\d{4})[-/](\d\d)[-/](\d\d)[ T](\d\d):(\d\d):(\d\d)")


def wall_time(text: str) -> float | None:
    """Unix seconds of the first ``YYYY-MM-DD HH:MM:SS`` in ``text`` (read as UTC)."""
    m = _STAMP.search(text, 0, 64)
    if not m:
        return None
    try:
        return datetime(*map(int, m.groups()), tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


@dataclass
class StepClock:
    """Turns a counter that may restart (runs appended to one file, iterations counted per epoch)
    into a step that never goes back: after a restart the counter continues from the last step.
    A restart is a drop to half or less, or no rise while the epoch moved on; a small drop (rows
    a little out of order) is not one."""

    base: int = 0
    last_raw: int | None = None
    last_epoch: float | None = None

    def step(self, raw: int, epoch: float | None = None) -> int:
        last = self.last_raw
        if last is not None and (
            (raw < last and raw <= last // 2)
            or (epoch is not None and self.last_epoch is not None and epoch > self.last_epoch and raw <= last)
        ):
            self.base += last
        self.last_raw = raw
        if epoch is not None:
            self.last_epoch = epoch
        return self.base + raw

    @property
    def current(self) -> int:
        return self.base + (self.last_raw or 0)

    def dump(self) -> dict[str, Any]:
        return {"base": self.base, "last_raw": self.last_raw, "last_epoch": self.last_epoch}

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> StepClock:
        data = data or {}
        return cls(int(data.get("base") or 0), data.get("last_raw"), data.get("last_epoch"))


@dataclass
class Parser:
    """Base of all parsers. ``rows(f, final)`` streams rows from ``state['offset']``; ``final`` says
    the file is not being written any more, so an unterminated last line is complete."""

    path: Path
    state: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # run-level facts: total_steps, config

    format = "unknown"
    appendable = True  # False: a whole document, re-read when it changes

    def error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{self.path}:{line}: {message}")

    def rows(self, f: BinaryIO, final: bool) -> Iterator[Row]:
        raise NotImplementedError


class LineParser(Parser):
    """A parser of line-oriented logs: lines end in ``\\n``, ``\\r\\n`` or a lone ``\\r`` (progress
    bars). Line numbers count newlines, as an editor does."""

    def rows(self, f: BinaryIO, final: bool) -> Iterator[Row]:
        offset = int(self.state.get("offset", 0))
        line = int(self.state.get("line", 0))
        f.seek(offset)
        tail = b""
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            buf = tail + chunk
            # a final \r may be the first half of \r\n: keep it for the next chunk
            search = buf[:-1] if buf.endswith(b"\r") else buf
            cut = max(search.rfind(b"\n"), search.rfind(b"\r")) + 1
            tail = buf[cut:]
            if len(tail) > MAX_LINE:  # no line end in sight: skip the monster, keep memory bounded
                self.error(line + 1, f"line longer than {MAX_LINE >> 20} MB skipped")
                offset += len(tail)
                tail = b""
            for raw in buf[:cut].splitlines(keepends=True):
                line += raw.endswith(b"\n") or 0
                offset += len(raw)
                yield from self._line(raw, line + (not raw.endswith(b"\n")))
                self.state["offset"], self.state["line"] = offset, line
        self.state["unterminated"] = False
        if tail and final:
            yield from self._line(tail, line + 1)
            self.state["offset"], self.state["unterminated"] = offset + len(tail), True

    def _line(self, raw: bytes, line: int) -> Iterator[Row]:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        if any(marker in text for marker in CRASH_MARKERS):
            self.state["crash"] = f"line {line}: {text[:CRASH_TEXT_CHARS]}"
            return
        try:
            for row in self.parse_line(text, line):
                self.state.pop("crash", None)
                yield row
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
            self.error(line, f"cannot parse line ({exc})")

    def parse_line(self, text: str, line: int) -> Iterator[Row]:
        raise NotImplementedError
