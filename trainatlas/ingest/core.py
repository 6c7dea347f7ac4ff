"""``ingest_file``: one foreign log into one trainatlas run, idempotent and incremental.

The run id is derived from the file's absolute path, so ingesting the same file again updates
its run. run.json remembers where the parse stopped (byte offset, parser state) and what the file
looked like (size, mtime, a hash of its head): a file that only grew is parsed from the offset; a
file that shrank, whose head changed, or that is a whole document (trainer_state.json) is parsed
again from the start and its run rebuilt. An unchanged file costs a stat and a run.json read, so
a watcher can call this every second.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainatlas.ingest.base import Parser
from trainatlas.ingest.detect import PARSERS, sniff
from trainatlas.ingest.keys import KeyMapper
from trainatlas.ingest.writer import ScalarWriter, clear_scalars, find_run_dir
from trainatlas.store.layout import RUN_FILE, resolve_root, run_dir
from trainatlas.store.runinfo import LOG_LIVE_S, log_status, read_run_json, utcnow_iso, write_run_json

DEFAULT_PROJECT = "imported"
LIVE_S = LOG_LIVE_S  # a file modified this recently is still being written: the run is "running"
HEAD_BYTES = 4096
PROGRESS_EVERY = 20_000  # rows between progress callbacks
GENERIC_NAMES = ("scalars.json", "trainer_state.json", "metrics.csv", "results.csv", "log.txt", "training.log",
                 "train.log", "log.json", "events.out.tfevents")  # fmt: skip


@dataclass
class IngestResult:
    """What one ``ingest_file`` call did. ``errors`` are ``file:line: message`` strings."""

    path: str
    run_id: str | None = None
    name: str | None = None
    project: str | None = None
    format: str | None = None
    rows_added: int = 0
    steps: int = 0
    status: str | None = None
    mode: str = "skipped"  # new | append | rebuild | unchanged | skipped
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    run_dir: str | None = None

    @property
    def ok(self) -> bool:
        return self.run_id is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_id_for(path: Path) -> str:
    """Stable per absolute path: the same file always lands in the same run."""
    return "ingest-" + hashlib.sha1(str(path).encode()).hexdigest()[:12]


def run_name_for(path: Path) -> str:
    """A readable name: the file name without its generic part, or the directory for generic names
    (``work_dirs/exp/20230605_114237/vis_data/scalars.json`` is ``20230605_114237``)."""
    name = path.name
    for generic in GENERIC_NAMES:
        if name == generic or name.startswith(generic):
            parent = path.parent
            if parent.name in ("vis_data", "logs") or parent.name.startswith(("checkpoint-", "version_")):
                return f"{parent.parent.name}/{parent.name}" if parent.name != "vis_data" else parent.parent.name
            return parent.name or name
        cut = name.find("." + generic)
        if cut > 0:
            return name[:cut]
    return path.stem or name


def _head_hash(path: Path, length: int) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read(length)).hexdigest()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def ingest_file(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    project: str | None = None,
    *,
    fmt: str | None = None,
    final: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Ingest (or update) the run of one log file. Never raises on bad input: problems are in
    ``errors``. ``final`` (default: the file was not modified in the last ``LIVE_S`` seconds)
    says an unterminated last line is complete; ``progress`` gets the byte position now and then."""
    path = Path(path).expanduser().resolve()
    result = IngestResult(str(path))
    try:
        st = path.stat()
    except OSError as exc:
        result.errors.append(f"{path}: cannot read ({exc.strerror or exc})")
        return result
    if not path.is_file():
        result.errors.append(f"{path}: not a file")
        return result
    root_dir = resolve_root(root).expanduser().resolve()
    run_id = run_id_for(path)
    old_dir = find_run_dir(root_dir, run_id)
    old: dict[str, Any] = {}
    if old_dir is not None:
        try:
            old = read_run_json(old_dir / RUN_FILE)
        except ValueError:
            old = {}
    state_old = old.get("ingest") or {}
    fmt = fmt or state_old.get("format") or sniff(path)
    if fmt not in PARSERS:
        result.errors.append(f"{path}:1: not a training log this version can read")
        return result
    project = project or old.get("project") or DEFAULT_PROJECT
    target = run_dir(root_dir, project, run_id)
    live = time.time() - st.st_mtime < LIVE_S
    final = not live if final is None else final
    result.run_id, result.project, result.format = run_id, project, fmt
    result.name = old.get("name") or run_name_for(path)
    result.run_dir = str(target)

    parser: Parser = PARSERS[fmt](path)
    mode = _mode(path, st, state_old, parser, old_dir, target, fmt)
    if mode == "unchanged":
        result.mode, result.steps = mode, int(old.get("steps") or 0)
        result.status = log_status(live, state_old.get("parser") or {})
        if old.get("status") != result.status and old_dir is not None:
            write_run_json(
                old_dir / RUN_FILE, {**old, "status": result.status, "ended_at": None if live else _iso(st.st_mtime)}
            )
        return result
    if old_dir is not None and old_dir != target:
        shutil.rmtree(old_dir, ignore_errors=True)  # moved to another project: rebuilt there
    if mode == "rebuild":
        clear_scalars(target)
    else:
        parser.state = dict(state_old.get("parser") or {})
        parser.meta = dict(state_old.get("meta") or {})
    target.mkdir(parents=True, exist_ok=True)
    writer = ScalarWriter(target, run_id)
    first_wall = _write_rows(
        parser, path, final, writer, KeyMapper(lambda: fmt == "mmtext" or _is_mm(parser)), progress
    )
    writer.flush()

    prev_steps = int(old.get("steps") or 0) if mode == "append" else 0
    steps = max(prev_steps, writer.max_step or 0)
    result.mode, result.rows_added, result.steps = mode, writer.rows, steps
    result.errors, result.error_count = parser.errors, parser.error_count
    result.status = log_status(live, parser.state)
    started = old.get("started_at") if mode == "append" and old.get("started_at") else None
    info = {
        "run_id": run_id,
        "name": result.name,
        "project": project,
        "status": result.status,
        "source": f"ingest:{fmt}",
        "source_path": str(path),
        "started_at": started or _iso(first_wall if first_wall else st.st_mtime),
        "ended_at": None if live else _iso(st.st_mtime),
        "heartbeat_at": _iso(st.st_mtime),
        "steps": steps,
        "total_steps": parser.meta.get("max_steps"),
        "config": {k: v for k, v in parser.meta.items() if isinstance(v, (int, float, str))},
        "ingested_at": utcnow_iso(),
        "ingest": {
            "format": fmt,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "head_len": min(HEAD_BYTES, st.st_size),
            "head_sha1": _head_hash(path, min(HEAD_BYTES, st.st_size)),
            "parser": parser.state,
            "meta": parser.meta,
            "rows": (int(state_old.get("rows") or 0) if mode == "append" else 0) + writer.rows,
            "errors": parser.errors[:10],
            "error_count": parser.error_count,
        },
    }
    write_run_json(target / RUN_FILE, info)
    return result


def _is_mm(parser: Parser) -> bool:
    return parser.state.get("kind") in ("mmcv", "mmengine")


def _mode(path: Path, st: os.stat_result, state: dict[str, Any], parser: Parser, old_dir: Path | None,
          target: Path, fmt: str) -> str:  # fmt: skip
    """new, unchanged, append (the file only grew) or rebuild."""
    if old_dir is None or not state:
        return "new" if old_dir is None else "rebuild"
    if old_dir != target or state.get("format") != fmt:
        return "rebuild"
    if st.st_size == state.get("size") and st.st_mtime_ns == state.get("mtime_ns"):
        return "unchanged"
    offset = int((state.get("parser") or {}).get("offset") or 0)
    if not parser.appendable or st.st_size < offset or st.st_size < int(state.get("size") or 0):
        return "rebuild"
    if (state.get("parser") or {}).get("unterminated"):
        return "rebuild"  # the last line was read without its end: it may have been cut
    head_len = int(state.get("head_len") or 0)
    if _head_hash(path, head_len) != state.get("head_sha1"):
        return "rebuild"
    return "append"


def _write_rows(parser: Parser, path: Path, final: bool, writer: ScalarWriter, mapper: KeyMapper,
                progress: Callable[[int], None] | None) -> float | None:  # fmt: skip
    """Stream the parser's rows into the writer under trainatlas and source names; the first wall time."""
    first_wall = None
    n = 0
    with open(path, "rb") as f:
        for row in parser.rows(f, final):
            if first_wall is None and row.wall is not None:
                first_wall = row.wall
            keys: list[str] = []
            vals: list[float] = []
            for name, value in row.values.items():
                for key in mapper.targets(name):
                    keys.append(key)
                    vals.append(value)
            if row.epoch is not None and "epoch" not in row.values:
                keys.append("epoch")
                vals.append(row.epoch)
            writer.add(row.step, row.wall, keys, vals)
            n += 1
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress(f.tell())
        if progress is not None:
            progress(f.tell())
    return first_wall


def ingest_paths(
    paths: Iterable[str | os.PathLike[str]],
    root: str | os.PathLike[str] | None = None,
    project: str | None = None,
    progress: Callable[[Path, int, int], None] | None = None,
) -> list[IngestResult]:
    """Ingest files and every training log found under directories. ``progress(file, done_bytes,
    total_bytes)`` follows the bytes read over all files."""
    from trainatlas.ingest.discover import walk_logs

    root_dir = resolve_root(root).expanduser().resolve()
    files: list[tuple[Path, str | None]] = []
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            files.extend((f, fmt) for f, fmt in walk_logs(p, skip=root_dir))
        else:
            files.append((p, None))
    sizes = [_size(f) for f, _ in files]
    total, done = sum(sizes), 0
    results = []
    for (file, fmt), size in zip(files, sizes, strict=False):

        def step(pos: int, file: Path = file, base: int = done) -> None:
            if progress is not None:
                progress(file, base + pos, total)

        results.append(ingest_file(file, root_dir, project, fmt=fmt, progress=step))
        done += size
        if progress is not None:
            progress(file, done, total)
    return results


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
