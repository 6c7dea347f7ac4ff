"""Arrow schemas of the three tables every run writes. Columns only ever get added."""

from __future__ import annotations

import pyarrow as pa

SCALARS = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("ts", pa.float64()),  # unix seconds
        ("key", pa.string()),
        ("value", pa.float64()),
    ]
)

LAYERS = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("layer", pa.string()),
        ("position", pa.int32()),  # order of the layer in the model (first = 0)
        ("module_type", pa.string()),
        ("param_count", pa.int64()),
        ("training", pa.bool_()),
        ("grad_norm", pa.float64()),
        ("weight_norm", pa.float64()),
        ("update_ratio", pa.float64()),  # ||w_after - w_before|| / ||w_before|| over one step
        ("act_mean", pa.float64()),
        ("act_std", pa.float64()),
        ("act_zero_frac", pa.float64()),  # share of output elements exactly 0
        ("act_dead_frac", pa.float64()),  # share of output units that are 0 for the whole batch
        ("act_sat_frac", pa.float64()),  # share saturated (tanh |y|>0.99, sigmoid y<0.01 or >0.99)
    ]
)

EVENTS = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("ts", pa.float64()),
        ("kind", pa.string()),
        ("code", pa.string()),
        ("severity", pa.string()),
        ("message", pa.string()),
        ("payload", pa.string()),  # JSON text
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"scalars": SCALARS, "layers": LAYERS, "events": EVENTS}
