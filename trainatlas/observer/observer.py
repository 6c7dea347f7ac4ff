"""The Observer: records a training run into Parquet shards without getting in its way.

The training thread does the least possible per step (a few clock reads, a detached loss tensor,
a fused gradient-norm kernel, one list append). A background thread samples the system, converts
tensors to floats in bulk, writes one shard per table about every second and keeps the heartbeat.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import os
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from trainatlas.observer.guard import Channels
from trainatlas.observer.recording import Recording
from trainatlas.observer.system import SystemSampler
from trainatlas.store.layout import RUN_FILE, TABLES, new_run_id, resolve_root, run_dir
from trainatlas.store.runinfo import process_identity, utcnow_iso, write_run_json
from trainatlas.store.shards import (
    ROLLING_COMPACT_AT,
    ShardWriter,
    compact,
    list_shards,
    next_index,
    shard_path,
)

CARBON_EVERY_S = 15.0
GRAD_NORM_BUDGET = 0.001  # share of step time the per-step gradient norm may take
GRAD_NORM_MAX_GAP = 50  # ... but at least one gradient norm every this many steps
MAX_PENDING_STEPS = 10_000  # unwritten steps (or log calls) before recording thins out
TRIM_AFTER_ROWS = 10_000  # a flush this large means a backlog: hand its memory back to the OS
LR_EVERY = 10  # learning rates are read every this many steps (schedules change slowly)
HEARTBEAT_EVERY_S = 10.0  # run.json is rewritten this often (and at close); readers allow 120 s


class Observer:
    """Records one training run. See the README for what each channel records.

    Args:
        project: groups runs; a directory ``project=<project>`` under the root.
        name: a human name for the run (the run id when not given).
        root: where runs are written; ``$TRAINATLAS_ROOT`` or ``./trainatlas-runs`` by default.
        config: the run's hyperparameters, kept in ``run.json`` (used by comparisons).
        sample_every: per-layer statistics every this many steps (0 switches them off).
        flush_every_s: how often buffered data is written; a killed run loses at most this much.
        system: sample process memory/CPU and GPU metrics about once a second.
        carbon: measure energy and CO2 with CodeCarbon (default: when it is installed).
        carbon_country: ISO 3166-1 alpha-3 country for the grid carbon intensity
            (default ``$TRAINATLAS_CARBON_COUNTRY``, else ``USA``).
        grad_norm_every: compute the global gradient norm every this many steps; ``None``
            (default) computes it whenever its cost stays under 0.1% of the step time.
    """

    def __init__(
        self,
        project: str = "default",
        name: str | None = None,
        root: str | os.PathLike[str] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        sample_every: int = 100,
        flush_every_s: float = 1.0,
        system: bool = True,
        carbon: bool | None = None,
        carbon_country: str | None = None,
        grad_norm_every: int | None = None,
    ) -> None:
        self.project = project
        self.run_id = new_run_id()
        self.name = name or self.run_id
        self.root = resolve_root(root)
        self.dir: Path = run_dir(self.root, project, self.run_id)
        self.sample_every = max(0, int(sample_every))
        self.flush_every_s = float(flush_every_s)
        self.global_step = 0
        self.closed = False
        self._pid = os.getpid()
        self._rec = Recording()
        self._channels = Channels(["steps", "layers", "log", "system", "carbon", "writer", "carry"])
        if not system:
            self._channels.enabled.discard("system")
        self._carbon_wanted = carbon
        self._carbon_country = carbon_country
        self._model: Any = None
        self._optimizer: Any = None
        self._params: list[Any] = []
        self._sampler: Any = None
        self._hooks: list[Any] = []
        self._last_end: float | None = None
        self._forward_start: float | None = None
        self._grad_norm_every = grad_norm_every
        self._next_grad_norm = 1  # the step at which the global gradient norm is next computed
        self._layers_due = math.inf  # the step at which the layer sampler has work (arm or collect)
        self._thinning = False
        self._log_keys: tuple[Any, ...] = ()  # the keys of the last log() call
        self._next_heartbeat = 0.0
        self._next_shard = dict.fromkeys(TABLES, 0)
        self._unmerged = dict.fromkeys(TABLES, 0)  # shards written since the table was last compacted
        self._lock = threading.RLock()  # the background thread, watch() and close()
        self._stop = threading.Event()
        self._info: dict[str, Any] = {
            "run_id": self.run_id,
            "name": self.name,
            "project": project,
            "status": "running",
            "source": "observer",
            "started_at": utcnow_iso(),
            "ended_at": None,
            "heartbeat_at": utcnow_iso(),
            "steps": 0,
            "config": dict(config or {}),
            "total_steps": None,
            **process_identity(),
        }
        self.recording = self._open_run_dir()
        if not self.recording:
            return
        _watch_interpreter_exit()
        _live.add(self)
        self._thread = threading.Thread(target=self._background, name="trainatlas", daemon=True)
        self._thread.start()

    # -- the public API ------------------------------------------------------------------------

    def watch(self, model: Any, optimizer: Any = None, *, total_steps: int | None = None) -> None:
        """Install the hooks: step timing and data wait on ``model``, per-layer statistics on
        sampled steps, the learning rates of ``optimizer``. Call once, before training."""
        if not self.recording:
            return
        try:
            from trainatlas.observer.environment import model_summary, optimizer_summary
            from trainatlas.observer.layers import LayerSampler, grad_norms

            self._model, self._optimizer = model, optimizer
            self._params = [p for p in model.parameters() if p.requires_grad]
            self._grad_norms = grad_norms
            self._hooks.append(model.register_forward_pre_hook(self._on_forward))
            with self._lock:
                self._info["model"] = model_summary(model, optimizer)
                if optimizer is not None:
                    self._info["optimizer"] = optimizer_summary(optimizer)
                if total_steps:
                    self._info["total_steps"] = int(total_steps)
            if optimizer is not None:
                self._channels.run("carry", self._probe_carry, optimizer)
            if self.sample_every:
                self._sampler = LayerSampler(model)
                self._sampler.arm()  # the first step is always sampled
                self._layers_due = 0
            self._write_info()
        except Exception as exc:  # noqa: BLE001
            self._channels.disable("layers", exc)

    def step(
        self,
        loss: Any = None,
        *,
        batch_size: int | None = None,
        epoch: float | None = None,
        step: int | None = None,
    ) -> None:
        """Record one optimizer step. ``loss`` may be a tensor: it is not synced to the host here."""
        now = time.perf_counter()
        if not self.recording or "steps" not in self._channels.enabled:
            return
        try:
            self.global_step = s = self.global_step + 1 if step is None else int(step)
            last, start = self._last_end, self._forward_start
            self._forward_start = None
            if loss is not None and type(loss) is not float:
                loss = loss.detach() if hasattr(loss, "detach") else loss
            grad_norm = self._grad_norm(s, now, last) if s >= self._next_grad_norm and self._params else None
            opt = self._optimizer
            lrs = tuple(g["lr"] for g in opt.param_groups) if opt is not None and s % LR_EVERY == 1 else ()
            pending = self._rec.steps
            if len(pending) < MAX_PENDING_STEPS or not self._thinned_out(s, len(pending)):
                # raw clock readings: durations and wall time are computed in bulk when written
                pending.append((s, now, last, start, loss, grad_norm, batch_size, lrs, epoch))
            if s >= self._layers_due:
                self._channels.run("layers", self._sample_layers, s)
        except Exception as exc:  # noqa: BLE001
            self._channels.disable("steps", exc)
        self._last_end = time.perf_counter()

    def _thinned_out(self, step: int, pending: int) -> bool:
        """Bound memory when steps come faster than they can be written (a loop that does nothing
        but log): keep 1 step in 2, 4, 8, ... as the backlog grows, instead of growing without limit."""
        keep_every = 2 ** (pending // MAX_PENDING_STEPS)
        if not self._thinning:
            self._thinning = True
            self._rec.event(step, time.time(), "observer", "recording_thinned", "warning",
                            "steps arrive faster than they can be written: recording is thinned")  # fmt: skip
        return step % keep_every != 0

    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Record named scalars (numbers or tensors) at the current step, e.g. ``val/loss``."""
        if not self.recording or "log" not in self._channels.enabled:
            return
        try:
            pending = self._rec.logged
            if len(pending) < MAX_PENDING_STEPS or not self._thinned_out(self.global_step, len(pending)):
                # keys and values as two tuples, not a dict copy: cheaper to build and to keep; calls
                # with the same keys as the previous one (the usual case) share its keys tuple
                keys = tuple(values)
                if keys != self._log_keys:
                    self._log_keys = keys
                step = self.global_step if step is None else int(step)
                pending.append((step, time.time(), self._log_keys, tuple(values.values())))
        except Exception as exc:  # noqa: BLE001
            self._channels.disable("log", exc)

    def close(self, status: str = "completed", error: str | None = None) -> None:
        """Write what is buffered, compact the shards and mark the run ``completed`` or ``failed``."""
        if self.closed or os.getpid() != self._pid:
            return
        self.closed = True
        _live.discard(self)
        for h in self._hooks:
            h.remove()
        if self._sampler is not None:
            self._sampler.disarm()
        if not self.recording:
            return
        self._stop.set()
        self._thread.join(timeout=60)
        with self._lock:
            self._rec.event(self.global_step, time.time(), "lifecycle", f"run_{status}",
                            "info" if status == "completed" else "critical",
                            f"run {status} after {self.global_step} steps")  # fmt: skip
            self._flush()
            while self._rec.pending() and "writer" in self._channels:
                self._flush()
            for table in TABLES:
                self._channels.run("writer", compact, self.dir / table)
            _release_arrow_memory()
            self._info.update(status=status, ended_at=utcnow_iso(), heartbeat_at=utcnow_iso(), steps=self.global_step)
            if error:
                self._info["traceback"] = error
            self._info["channels_off"] = self._channels.failures
            self._write_info()

    def __enter__(self) -> Observer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.close("failed", "".join(traceback.format_exception(exc_type, exc, tb)))

    # -- the training thread's helpers ---------------------------------------------------------

    def _probe_carry(self, optimizer: Any) -> None:
        from trainatlas.observer.carry import KEY, CarryProbe, applies

        if not applies(optimizer):
            return
        keys = (KEY,)

        def record(step: int, value: Any) -> None:
            self._rec.logged.append((step, time.time(), keys, (value,)))

        self._hooks.append(CarryProbe(optimizer, record, lambda fn, *args: self._channels.run("carry", fn, *args)))

    def _on_forward(self, module: Any, args: Any) -> None:
        if self._forward_start is None:
            self._forward_start = time.perf_counter()

    def _grad_norm(self, step: int, now: float, last: float | None) -> Any:
        """The global gradient norm, and when to compute it next: every ``grad_norm_every`` steps, or
        as often as keeps its measured cost under ``GRAD_NORM_BUDGET`` of the step time (at least
        every ``GRAD_NORM_MAX_GAP`` steps). Skipped steps cost one integer comparison."""
        start = time.perf_counter()
        norms = self._grad_norms(self._params)
        cost = time.perf_counter() - start
        if self._grad_norm_every is not None:
            interval = self._grad_norm_every
        elif last is None:  # the first step: kernels warm up, nothing to compare with yet
            interval = 1
        else:
            step_s = max(now - last, 1e-9)
            interval = min(GRAD_NORM_MAX_GAP, max(1, math.ceil(cost / (GRAD_NORM_BUDGET * step_s))))
        self._next_grad_norm = step + interval
        return norms

    def _sample_layers(self, step: int) -> None:
        """Collect the sampled step's layer stats, arm the hooks before the next sampled step
        (multiples of ``sample_every``), and note the step at which there is work again."""
        sampler = self._sampler
        if sampler.armed:
            self._collect_layers(step)
        every = self.sample_every
        if (step + 1) % every == 0:
            sampler.arm()
            self._layers_due = step + 1
        else:
            self._layers_due = (step + 1) // every * every + every - 1  # the next step that arms

    def _collect_layers(self, step: int) -> None:
        self._rec.layers.append((step, time.time(), self._sampler.collect()))

    # -- the background thread -----------------------------------------------------------------

    def _background(self) -> None:
        from trainatlas.observer.environment import environment

        system = self._channels.run("system", SystemSampler)
        if system is not None:  # before the slow environment probe: memory from the first second on
            with self._lock:
                self._sample("system", system.sample)
        try:  # a git call and imports: done here, off the training's start path
            env = environment()
        except Exception as exc:  # noqa: BLE001 - a missing detail must not cost the recording
            env = {"error": repr(exc)}
        with self._lock:
            self._info["environment"] = env
            self._write_info()
        carbon = self._channels.run("carbon", self._start_carbon) if self._carbon_on() else None
        next_carbon = time.monotonic() + CARBON_EVERY_S
        while not self._stop.wait(0.0 if self._backlogged() else self.flush_every_s):
            with self._lock:
                if system is not None:
                    self._sample("system", system.sample)
                if carbon is not None and time.monotonic() >= next_carbon:
                    self._sample("carbon", carbon.read)
                    next_carbon = time.monotonic() + CARBON_EVERY_S
                self._flush()
        if system is not None:
            self._sample("system", system.sample)
        if carbon is not None:
            self._sample("carbon", carbon.stop)

    def _backlogged(self) -> bool:
        return max(len(self._rec.steps), len(self._rec.logged)) >= MAX_PENDING_STEPS // 4

    def _carbon_on(self) -> bool:
        if "carbon" not in self._channels:
            return False
        if self._carbon_wanted is None:
            from trainatlas.observer.carbon import carbon_available

            self._carbon_wanted = carbon_available()
        if not self._carbon_wanted:
            self._channels.enabled.discard("carbon")
        return bool(self._carbon_wanted)

    def _start_carbon(self) -> Any:
        from trainatlas.observer.carbon import CarbonMeter

        meter = CarbonMeter(self._carbon_country)
        self._info["carbon"] = {"country": meter.country, "source": "codecarbon-offline"}
        return meter

    def _sample(self, channel: str, read: Any) -> None:
        values = self._channels.run(channel, read)
        if values:
            self._rec.logged.append((self.global_step, time.time(), tuple(values), tuple(values.values())))

    def _flush(self) -> None:
        """Write one shard per table with what was recorded, and beat the heartbeat. One flush at a
        time (two would pick the same shard number): the lock is re-entrant, callers may hold it."""
        with self._lock:
            if "writer" not in self._channels:
                self._rec.clear()
                return
            try:
                drained = self._write_pending()
                # trimming walks the whole heap (torch's too): worth it only after a backlog was converted
                _release_arrow_memory(trim=drained >= TRIM_AFTER_ROWS)
                if time.monotonic() >= self._next_heartbeat:
                    self._next_heartbeat = time.monotonic() + HEARTBEAT_EVERY_S
                    self._info.update(heartbeat_at=utcnow_iso(), steps=self._rec.last_step)
                    self._info["channels_off"] = self._channels.failures
                    self._write_info()
            except Exception as exc:  # noqa: BLE001 - a full disk must not stop the training
                self._channels.disable("writer", exc)
                self._rec.clear()

    def _write_pending(self) -> int:
        """Everything recorded until now as one new shard per table, converted a chunk at a time;
        the number of rows written."""
        rows = 0
        written = []
        with contextlib.ExitStack() as shards:  # an error leaves no shard of this flush behind
            writers: dict[str, ShardWriter] = {}
            for chunk in self._rec.drain(self.run_id):
                for table, data in chunk.items():
                    if table not in writers:
                        writers[table] = shards.enter_context(ShardWriter(self._next_shard_path(table)))
                        written.append(table)
                    writers[table].write(data)
                    rows += data.num_rows
        for table in written:
            self._next_shard[table] += 1
            self._unmerged[table] += 1
            # counted, not listed, on every write: the directory is only read when it may be time
            if self._unmerged[table] >= ROLLING_COMPACT_AT:
                compact(self.dir / table, ROLLING_COMPACT_AT)  # merges only if there are that many
                self._unmerged[table] = len(list_shards(self.dir / table))
        return rows

    def _next_shard_path(self, table: str) -> Path:
        table_dir = self.dir / table
        if not self._next_shard[table]:
            table_dir.mkdir(exist_ok=True)
            self._next_shard[table] = next_index(table_dir)
        return shard_path(table_dir, self._next_shard[table])

    # -- the run directory ---------------------------------------------------------------------

    def _open_run_dir(self) -> bool:
        try:
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            self.dir.mkdir()
            write_run_json(self.dir / RUN_FILE, self._info)
            return True
        except OSError as exc:
            warnings.warn(
                f"trainatlas: cannot write the run under {self.root} ({exc}); "
                "this run is not recorded, training continues",
                RuntimeWarning,
                stacklevel=3,
            )
            return False

    def _write_info(self) -> None:
        with self._lock:
            write_run_json(self.dir / RUN_FILE, self._info)


def _release_arrow_memory(trim: bool = True) -> None:
    """Arrow's allocator keeps freed buffers for reuse, and glibc keeps freed heap in its arenas
    (one per thread that allocated); give both back so that the training process does not grow
    by what the writer once needed."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    libc = _libc()
    if trim and libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc() -> Any:
    """glibc, loaded on the first trim rather than at import; None where there is none (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only (not musl, macOS)
        return libc
    except (OSError, AttributeError):
        return None


# -- runs left open when the interpreter exits -----------------------------------------------------

_live: weakref.WeakSet[Observer] = weakref.WeakSet()
_uncaught: list[str] = []
_watching = False  # whether the exception hook and the exit handler are installed


def _watch_interpreter_exit() -> None:
    """Install, once, on the first Observer (not at import): the exception hook that remembers why a
    script died, and the exit handler that closes the runs it left open."""
    global _watching
    if _watching:
        return
    _watching = True
    previous = sys.excepthook

    def remember_uncaught(exc_type: Any, exc: Any, tb: Any) -> None:
        _uncaught.append("".join(traceback.format_exception(exc_type, exc, tb)))
        previous(exc_type, exc, tb)

    sys.excepthook = remember_uncaught
    atexit.register(_close_open_runs)


def _close_open_runs() -> None:
    """A script that never called close(): completed, or failed if it died of an exception."""
    for obs in list(_live):
        if _uncaught:
            obs.close("failed", _uncaught[-1])
        else:
            obs.close()
