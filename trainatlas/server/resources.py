"""MCP resources: the run list, one run, its diagnostics, and the SQL schema with examples."""

from __future__ import annotations

import json
from typing import Any

from fastmcp import FastMCP
from fastmcp.exceptions import ResourceError

from trainatlas.server.state import RootState
from trainatlas.store.schema import COLUMNS

EXAMPLES = {
    "last loss of every run": "SELECT r.name, arg_max(s.value, s.step) AS last_loss FROM scalars s "
    "JOIN runs r USING (run_id) WHERE s.key = 'train/loss' GROUP BY r.name",
    "metric keys of a run": "SELECT key, count(*), min(step), max(step) FROM scalars "
    "WHERE run_id = '<id>' GROUP BY key",
    "loss every 100 steps": "SELECT step // 100 * 100 AS bucket, avg(value) FROM scalars "
    "WHERE run_id = '<id>' AND key = 'train/loss' GROUP BY 1 ORDER BY 1",
    "layers with dead units": "SELECT layer, act_dead_frac FROM layers WHERE run_id = '<id>' AND step = "
    "(SELECT max(step) FROM layers WHERE run_id = '<id>') ORDER BY act_dead_frac DESC",
    "alerts": "SELECT step, code, severity, message FROM events WHERE kind = 'alert' ORDER BY ts DESC LIMIT 20",
}


def _json(payload: Any) -> str:
    return json.dumps(payload, default=str, indent=1)


def register_resources(mcp: FastMCP, state: RootState) -> None:
    """Add the trainatlas:// resources to ``mcp``. The analysis is imported on first read, as in the tools."""

    def lookup(fn: Any, *args: Any) -> Any:
        try:
            return fn(state.catalog(), *args)
        except LookupError as exc:
            from trainatlas.store.catalog import UnknownRun

            raise ResourceError(exc.answer if isinstance(exc, UnknownRun) else str(exc)) from exc

    @mcp.resource("trainatlas://runs", mime_type="application/json", description="every run, newest first")
    def runs() -> str:
        from trainatlas.tools.runs import list_runs

        return _json(lookup(list_runs))

    @mcp.resource(
        "trainatlas://runs/{run_id}/diagnostics", mime_type="application/json", description="a run's diagnosis"
    )
    def run_diagnostics(run_id: str) -> str:
        from trainatlas.tools.report import diagnose

        diagnosis = state.answer(("diagnose", run_id, ()), lambda: lookup(diagnose, run_id))
        return _json(diagnosis.model_dump(mode="json"))

    @mcp.resource("trainatlas://runs/{run_id}", mime_type="application/json", description="one run's summary")
    def run(run_id: str) -> str:
        from trainatlas.tools.runs import run_details

        return _json(lookup(run_details, run_id))

    @mcp.resource(
        "trainatlas://schema", mime_type="application/json", description="SQL tables, columns and example queries"
    )
    def schema() -> str:
        from trainatlas.store.catalog import RUNS_COLUMNS

        tables = {"runs": RUNS_COLUMNS, **COLUMNS}
        return _json(
            {
                "dialect": "DuckDB; one SELECT per query_sql call",
                "tables": {name: [{"name": c, "type": kind} for c, kind in cols] for name, cols in tables.items()},
                "notes": [
                    "scalars is long: one row per (run_id, step, key); common keys: train/loss, val/loss, val/acc, "
                    "lr, grad_norm, time/step_s, time/data_s, throughput/samples_per_s, mem/rss_bytes, energy/kwh, "
                    "carbon/kg",
                    "layers is sampled every N steps; NULL means not measured",
                    "runs.config is JSON: config->>'lr'",
                ],
                "examples": EXAMPLES,
            }
        )
