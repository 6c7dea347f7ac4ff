"""The columns of the three tables every run writes. Columns only ever get added.

Kept as plain (name, type) pairs so that reading (DuckDB) never has to import pyarrow; the writer
gets Arrow schemas from ``arrow_schema``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "scalars": (
        ("run_id", "VARCHAR"),
        ("step", "BIGINT"),
        ("ts", "DOUBLE"),  # unix seconds
        ("key", "VARCHAR"),
        ("value", "DOUBLE"),
    ),
    "layers": (
        ("run_id", "VARCHAR"),
        ("step", "BIGINT"),
        ("layer", "VARCHAR"),
        ("position", "INTEGER"),  # order of the layer in the model (first = 0)
        ("module_type", "VARCHAR"),
        ("param_count", "BIGINT"),
        ("training", "BOOLEAN"),
        ("grad_norm", "DOUBLE"),  # NULL: the layer got no gradient
        ("weight_norm", "DOUBLE"),
        ("update_ratio", "DOUBLE"),  # ||w_after - w_before|| / ||w_before|| over one step
        ("act_mean", "DOUBLE"),
        ("act_std", "DOUBLE"),
        ("act_zero_frac", "DOUBLE"),  # share of output elements exactly 0
        ("act_dead_frac", "DOUBLE"),  # share of output units that are 0 for the whole batch
        ("act_sat_frac", "DOUBLE"),  # share saturated (tanh |y|>0.99, sigmoid y<0.01 or >0.99)
    ),
    "events": (
        ("run_id", "VARCHAR"),
        ("step", "BIGINT"),
        ("ts", "DOUBLE"),
        ("kind", "VARCHAR"),
        ("code", "VARCHAR"),
        ("severity", "VARCHAR"),
        ("message", "VARCHAR"),
        ("payload", "VARCHAR"),  # JSON text
    ),
}


@cache
def arrow_schema(table: str) -> Any:
    import pyarrow as pa

    types = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "INTEGER": pa.int32(), "DOUBLE": pa.float64(),
             "BOOLEAN": pa.bool_()}  # fmt: skip
    return pa.schema([(name, types[kind]) for name, kind in COLUMNS[table]])
