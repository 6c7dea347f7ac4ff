"""One run's data as numpy arrays, read from the catalog on first use and cached.

Checks ask for what they need (``data.series("train/loss")``, ``data.layers()``). The scalars of a
run are read in one pass over its rows (the checks use most keys, and a query for one key still
scans every row); only runs too large for that are read key by key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainatlas.store.layout import RUN_FILE
from trainatlas.store.runinfo import read_run_json

if TYPE_CHECKING:
    from trainatlas.store.catalog import Catalog


@dataclass(frozen=True, eq=False)
class Series:
    """Values of one key in step order (never modified in place: derived values are cached)."""

    steps: np.ndarray
    values: np.ndarray
    derived: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.steps)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per series: several checks ask for the same buckets or median of a
        long series, each costing a pass over a million points."""
        if key not in self.derived:
            self.derived[key] = compute()
        return self.derived[key]

    def finite(self) -> Series:
        def compute() -> Series:
            ok = np.isfinite(self.values)
            return self if ok.all() else Series(self.steps[ok], self.values[ok])

        return self.memo("finite", compute)


EMPTY = Series(np.zeros(0, dtype=np.int64), np.zeros(0))

LOAD_ALL_ROWS = 10_000_000  # runs up to this many scalar rows are read in one pass (~17 bytes a row)
LOAD_ALL_KEYS = 255  # ... and up to this many keys (the key is read as a one-byte code)
LOSS_KEYS = ("train/loss", "loss", "train_loss")
VAL_LOSS_KEYS = ("val/loss", "eval/loss", "valid/loss", "val_loss", "eval_loss", "test/loss")
# Component losses: detectors log their loss terms, and some (YOLOv5, Ultralytics) no total. Without a
# total, two or more terms are summed and the sum is the run's loss: it is the objective the optimizer
# minimises (both frameworks log each term with its weight applied). Terms are ``train/<name>_loss``,
# ``train/loss_<name>`` (YOLO's train/box_loss, cls_loss, dfl_loss, obj_loss) or ``loss_<name>``
# (MMDet's loss_cls, loss_bbox, loss_mask).
# Not terms: per-decoder-layer copies (``_0`` .. ``_5``) and ``_unscaled`` values, which the terms
# already hold; ``_step``/``_epoch`` aggregates of one loss; the fp16 ``loss_scale``; adversaries (a
# GAN's Generator_loss and Discriminator_loss), which are two objectives, not parts of one.
COMPONENT_LOSS = re.compile(r"^(?:train/(?:\w+_loss|loss_(?!scale)\w+)|loss_(?!scale)[a-z]\w*)$")
NOT_A_TERM = re.compile(r"(?:_\d+|_unscaled|_step|_epoch|_total|_avg|_mean)$")
MIN_TERMS = 2
# Checkpoint saves the run declares: events of kind ``checkpoint`` (their step), or a save interval in
# the config (Hugging Face ``save_steps``, unless ``save_strategy`` says otherwise, or a loop's own).
CHECKPOINT_EVERY_KEYS = ("save_steps", "checkpoint_every", "save_every", "ckpt_every", "checkpoint_interval")


class RunData:
    """The run's metadata plus lazy, cached access to its scalars, layers and events."""

    def __init__(self, catalog: Catalog, run: dict[str, Any]) -> None:
        self.catalog = catalog
        self.run = run
        self.run_id: str = run["run_id"]
        try:
            self.info = read_run_json(Path(run["path"]) / RUN_FILE)
        except ValueError:
            self.info = {}
        config = run.get("config")
        self.config: dict[str, Any] = json.loads(config) if isinstance(config, str) else dict(config or {})
        self.scalars_table = catalog.run_table("scalars", self.run_id)
        self._series: dict[str, Series] = {}
        self._keys: set[str] | None = None
        self._layers: dict[str, np.ndarray] | None = None
        self.derived: dict[str, Any] = {}

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per run, for data several checks derive the same way (per-layer rows)."""
        if key not in self.derived:
            self.derived[key] = compute()
        return self.derived[key]

    @classmethod
    def load(cls, catalog: Catalog, ref: str) -> RunData:
        return cls(catalog, catalog.resolve(ref))

    # -- scalars -------------------------------------------------------------------------------------

    @property
    def keys(self) -> set[str]:
        if self._keys is None:
            counts = self.catalog.con.execute(
                f"SELECT key, count(*) FROM {self.scalars_table} GROUP BY key ORDER BY key"
            ).fetchall()
            self._keys = {k for k, _ in counts}
            if sum(n for _, n in counts) <= LOAD_ALL_ROWS and len(counts) <= LOAD_ALL_KEYS:
                self._load_all([k for k, _ in counts])
        return self._keys

    def _load_all(self, keys: list[str]) -> None:
        """Every key in one scan, in the rows' stored order. The key comes as its position in
        ``keys`` (a string per row would cost more than the scan) and the rows through Arrow (a
        third of the cost of fetchnumpy for millions of rows)."""
        table = self.catalog.con.sql(
            f"SELECT list_position(?, key)::UTINYINT AS code, step, value FROM {self.scalars_table}", params=[keys]
        ).to_arrow_table()
        code, steps, values = (table.column(name).to_numpy() for name in ("code", "step", "value"))
        split = _split_rows(code, steps, values, len(keys) + 1)
        for i, key in enumerate(keys, start=1):
            self._series[key] = _ordered(*split[i])

    def has(self, key: str) -> bool:
        return key in self.keys

    def series(self, key: str) -> Series:
        """All values of ``key`` in step order (the last value wins when a step repeats)."""
        if key not in self._series:
            if key not in self.keys:
                self._series[key] = EMPTY
            elif key not in self._series:
                got = self.catalog.con.execute(
                    f"SELECT step, value FROM {self.scalars_table} WHERE key = ?", [key]
                ).fetchnumpy()
                self._series[key] = _ordered(got["step"], got["value"])
        return self._series[key]

    def first_key(self, candidates: tuple[str, ...]) -> str | None:
        return next((k for k in candidates if k in self.keys), None)

    @property
    def loss_key(self) -> str | None:
        """The training loss: a logged total (``LOSS_KEYS``), else the sum of two or more component
        losses (``COMPONENT_LOSS``), named by its terms: ``train/box_loss+train/cls_loss+train/dfl_loss``."""
        return self.first_key(LOSS_KEYS) or self._summed(self.loss_terms)

    @property
    def val_loss_key(self) -> str | None:
        """The validation loss, when logged as a total. Validation terms are not summed: frameworks
        compute them otherwise than the training terms (YOLOv5's val/obj_loss runs 2x its train/obj_loss
        on a healthy run), so their sum is not comparable with the training loss."""
        return self.first_key(VAL_LOSS_KEYS)

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The component losses summed into the training loss; empty when a total is logged or fewer
        than two terms are."""

        def compute() -> tuple[str, ...]:
            if self.first_key(LOSS_KEYS):
                return ()
            terms = tuple(sorted(k for k in self.keys if COMPONENT_LOSS.match(k) and not NOT_A_TERM.search(k)))
            return terms if len(terms) >= MIN_TERMS else ()

        return self.memo("loss_terms", compute)

    def _summed(self, terms: tuple[str, ...]) -> str | None:
        """Register the sum of ``terms`` (at the steps where every term is logged) as a series."""
        if not terms:
            return None
        key = "+".join(terms)
        if key not in self._series:
            parts = [self.series(t) for t in terms]
            steps = parts[0].steps
            for part in parts[1:]:
                steps = np.intersect1d(steps, part.steps)
            total = sum(p.values[np.searchsorted(p.steps, steps)] for p in parts)
            self._series[key] = Series(steps, np.asarray(total, dtype=np.float64))
        return key

    @property
    def logged_loss_key(self) -> str | None:
        """A key the training loss is logged under (the first term of a summed loss): for SQL on rows."""
        return self.first_key(LOSS_KEYS) or next(iter(self.loss_terms), None)

    @property
    def total_steps(self) -> int | None:
        """The planned length, when the run says it: ``total_steps`` or a config key."""
        for value in (
            self.info.get("total_steps"),
            self.config.get("max_steps"),
            self.config.get("total_steps"),
            self.config.get("num_training_steps"),
        ):
            if isinstance(value, (int, float)) and value > 0:
                return int(value)
        return None

    @property
    def last_step(self) -> int:
        return int(self.run.get("steps") or 0)

    @property
    def finished(self) -> bool:
        """Whether the run trains no more: it ended (completed, failed, crashed) or reached its planned length."""
        total = self.total_steps
        return self.run.get("status") != "running" or bool(total and self.last_step >= total)

    @property
    def checkpoint_steps(self) -> list[int]:
        """The steps with a known checkpoint save (see ``CHECKPOINT_EVERY_KEYS``), in order; empty when
        the run declares none, and then no advice may count on one."""

        def compute() -> list[int]:
            rows = self.catalog.con.execute(
                f"SELECT DISTINCT step FROM {self.catalog.run_table('events', self.run_id)} WHERE kind = 'checkpoint'"
            ).fetchall()
            steps = {int(r[0]) for r in rows if r[0] is not None}
            every = next((self.config[k] for k in CHECKPOINT_EVERY_KEYS if k in self.config), None)
            saves = str(self.config.get("save_strategy", "steps")).lower() in ("steps", "intervalstrategy.steps")
            if isinstance(every, int) and not isinstance(every, bool) and every > 0 and saves:
                steps.update(range(every, self.last_step + 1, every))
            return sorted(steps)

        return self.memo("checkpoint_steps", compute)

    def checkpoint_at_or_before(self, step: int) -> int | None:
        """The last known checkpoint saved at or before ``step``."""
        earlier = [s for s in self.checkpoint_steps if s <= step]
        return earlier[-1] if earlier else None

    # -- layers --------------------------------------------------------------------------------------

    def layers(self) -> dict[str, np.ndarray]:
        """Per-layer stats as columns (``step``, ``layer``, ``grad_norm``, ...), step order."""
        if self._layers is None:
            cols = self.catalog.con.execute(
                f"SELECT * FROM {self.catalog.run_table('layers', self.run_id)} ORDER BY step, position"
            ).fetchnumpy()
            self._layers = {}
            for name, col in cols.items():
                mask = np.ma.getmaskarray(col)
                if col.dtype.kind == "f":
                    col = np.ma.filled(col, np.nan)
                    self._layers[f"{name}_is_null"] = mask  # null: not measured (e.g. no gradient)
                self._layers[name] = np.asarray(col)
        return self._layers

    @property
    def has_layers(self) -> bool:
        return len(self.layers()["step"]) > 0


def _split_rows(
    code: np.ndarray, steps: np.ndarray, values: np.ndarray, groups: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (steps, values) rows of each code from 0 to ``groups - 1``, in stored order. Rows mostly
    come in runs of one key (the Observer writes a block of steps key by key): the runs of each
    code are joined, one copy of each row. Interleaved keys are sorted by a stable argsort."""
    n = len(code)
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if n else np.zeros(0, dtype=np.int64)
    if len(starts) > n // 16:
        order = np.argsort(code, kind="stable")
        ends = np.r_[0, np.cumsum(np.bincount(code, minlength=groups))]
        steps, values = steps[order], values[order]
        return [(steps[ends[g] : ends[g + 1]], values[ends[g] : ends[g + 1]]) for g in range(groups)]
    bounds = np.r_[starts, n]
    run_code = code[starts]
    out = []
    for g in range(groups):
        runs = [slice(bounds[j], bounds[j + 1]) for j in np.flatnonzero(run_code == g)]
        out.append((_join(steps, runs), _join(values, runs)))
    return out


def _join(column: np.ndarray, runs: list[slice]) -> np.ndarray:
    return np.concatenate([column[r] for r in runs]) if runs else column[:0]


def _ordered(steps: Any, values: Any) -> Series:
    steps = np.asarray(steps, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    step = np.diff(steps)
    if np.any(step < 0):
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        step = np.diff(steps)
    if not np.all(step):  # keep the last value of a repeated step
        last = np.append(step != 0, True)
        steps, values = steps[last], values[last]
    return Series(steps, values)
