"""Which parser reads a file, decided from its first bytes (content first, the name only to break
ties), so renamed or extension-less logs are still recognised."""

from __future__ import annotations

import re
from pathlib import Path

from trainatlas.ingest.base import Parser
from trainatlas.ingest.csvlog import CsvParser
from trainatlas.ingest.hf import TrainerStateParser
from trainatlas.ingest.jsonlines import JsonLinesParser
from trainatlas.ingest.mmtext import MARKER, MMTextParser
from trainatlas.ingest.tensorboard import TensorBoardParser, is_tfrecord_header
from trainatlas.ingest.textlog import PAIR, SCORE, SPACED, STEP, TextLogParser

SNIFF_BYTES = 256 << 10
PARSERS: dict[str, type[Parser]] = {
    p.format: p
    for p in (TensorBoardParser, TrainerStateParser, JsonLinesParser, MMTextParser, CsvParser, TextLogParser)
}


def sniff(path: Path) -> str | None:
    """The format name of a training log (a key of ``PARSERS``), or None when it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return None
    return sniff_bytes(head, path.name)


def sniff_bytes(head: bytes, name: str = "") -> str | None:
    if is_tfrecord_header(head):
        return "tensorboard"
    if not head.strip() or b"\x00" in head[:4096]:
        return None
    text = head.decode("utf-8", "replace")
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        if '"log_history"' in text or ('"global_step"' in text and '"best_metric"' in text):
            return "hf-trainer-state"
        first = stripped.split("\n", 1)[0]
        if first.rstrip().endswith("}") or '"env_info"' in first[:20]:
            return "jsonl"
        return None
    lines = [ln for ln in re.split(r"[\r\n]+", text[:65536]) if ln.strip()]
    if _is_csv(lines):
        return "csv"
    if MARKER.search(text):
        return "mmtext"
    hits = sum(1 for ln in lines[:2000] if (STEP.search(ln) and PAIR.search(ln)) or SCORE.search(ln))
    if hits >= 1 or sum(1 for ln in lines[:2000] if len(PAIR.findall(ln)) >= 2) >= 2:
        return "text"
    if sum(1 for ln in lines[:2000] if STEP.match(ln.strip()) and len(SPACED.findall(ln)) >= 2) >= 2:
        return "text"
    return None


def _is_csv(lines: list[str]) -> bool:
    """A header of names and rows of mostly numbers, all with the header's number of commas."""
    if len(lines) < 1 or lines[0].count(",") < 1:
        return False
    header = [c.strip() for c in lines[0].split(",")]
    if any(_number(c) for c in header) or not all(header[:1]):
        return False
    rows = lines[1:50]
    if not rows:
        return len(header) >= 2 and not any(" " in c.strip() and ":" in c for c in header)
    width = len(header)
    good = 0
    for row in rows:
        cells = row.split(",")
        if len(cells) == width and sum(_number(c) for c in cells) >= max(1, sum(1 for c in cells if c.strip()) // 2):
            good += 1
    return good >= max(1, len(rows) * 3 // 4)


def _number(cell: str) -> bool:
    try:
        float(cell.strip().rstrip("%"))
        return True
    except ValueError:
        return False


def parser_for(path: Path, fmt: str | None = None) -> Parser | None:
    fmt = fmt or sniff(path)
    return PARSERS[fmt](path) if fmt in PARSERS else None
