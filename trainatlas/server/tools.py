"""The MCP tools: thin wrappers over ``trainatlas.tools``, each with typed arguments, an output
schema, annotations, and answers capped in size.

A bad argument or an unknown run raises ``ToolError`` with a message that says how to fix the
call; anything unexpected is masked by the server (``mask_error_details``) and never kills it.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools.base import ToolResult
from fastmcp.utilities.json_schema import compress_schema
from mcp_types import ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from trainatlas.server.outputs import Beliefs, EventList, LayerHealth, MetricSeries, PlotInfo, ReviewChange, RunSummary
from trainatlas.server.state import RootState
from trainatlas.tools import annotations as notes
from trainatlas.tools.answers import Comparison, Diagnosis, Status, SustainabilityReport

# The analysis modules (numpy, DuckDB) are imported inside the tools: the server answers
# `initialize` before paying for them.

MAX_ANSWER_CHARS = 80_000  # about 20k tokens
# User SQL has slots of its own, so slow queries (timeout_s up to 60 s) never hold up the other tools, whose
# analyses take ANALYSIS_SLOTS (server/state.py). Two queries at once: each sandbox query already runs DuckDB on 2
# threads. A query that finds both taken waits SQL_WAIT_S for one, then is refused with the reason.
SQL_AT_ONCE = 2
SQL_SLOTS = threading.BoundedSemaphore(SQL_AT_ONCE)
SQL_WAIT_S = 5.0
SQL_MAX_CHARS = 60_000
# All four hints on every tool: a client must not have to guess what a missing hint defaults to.
READ_ONLY = {"read_only_hint": True, "destructive_hint": False, "idempotent_hint": True, "open_world_hint": False}
WRITES = {"read_only_hint": False, "destructive_hint": False, "idempotent_hint": False, "open_world_hint": False}


def reads(title: str) -> ToolAnnotations:
    return ToolAnnotations(title=title, **READ_ONLY)


# plot_metrics answers a ToolResult (image content beside the data), so its schema is given, as fastmcp would make it
PLOT_SCHEMA = compress_schema(PlotInfo.model_json_schema(mode="serialization"), prune_titles=True)
RunArg = Annotated[
    str, Field(description="run id, a run name (the newest run of that name if several), or a unique run id prefix")
]
PlotKeys = Annotated[list[str], Field(min_length=1, max_length=6, description="metric keys, one panel each")]
OpenQuestions = Annotated[list[str], Field(max_length=20, description="what would change the belief")]
T = TypeVar("T")


def answers(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn the analysis' input errors into tool errors the model can act on, and refuse answers
    larger than about 20k tokens with advice on narrowing the request."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            result = fn(*args, **kwargs)
        except LookupError as exc:
            from trainatlas.store.catalog import UnknownRun  # DuckDB: imported once a tool is called

            raise ToolError(exc.answer if isinstance(exc, UnknownRun) else str(exc)) from exc
        except ValueError as exc:
            raise ToolError(str(exc)) from exc
        size = _size(result)
        if size > MAX_ANSWER_CHARS:
            raise ToolError(
                f"the answer would be {size:,} characters (limit {MAX_ANSWER_CHARS:,}): ask for fewer keys, "
                "fewer points, a smaller step range or a lower limit"
            )
        return result

    return wrapper


def _size(result: Any) -> int:
    if isinstance(result, BaseModel):
        return len(result.model_dump_json())
    if isinstance(result, ToolResult):
        return len(json.dumps(result.structured_content, default=str))
    return len(json.dumps(result, default=str))


class RunRow(BaseModel):
    run_id: str
    name: str
    project: str
    status: str = Field(description="running, completed, failed or crashed")
    steps: int
    last_loss: float | None
    age_s: float | None = Field(description="seconds since the run last wrote")
    started_at: str | None
    path: str


class RunList(BaseModel):
    runs: list[RunRow] = Field(description="newest first")
    total: int = Field(description="runs matching the filters")
    truncated: bool


Cell = bool | int | float | str | None


class QueryAnswer(BaseModel):
    columns: list[str]
    rows: list[list[Cell]] = Field(description="one list of cells per row; values of other types come as text")
    row_count: int
    truncated: bool
    note: str | None = None


def register_tools(mcp: FastMCP, state: RootState) -> None:
    """Add the 14 trainatlas tools to ``mcp``."""

    @mcp.tool(title="List training runs", annotations=reads("List training runs"))
    @answers
    def list_runs(
        project: Annotated[str | None, Field(description="only runs of this project")] = None,
        status: Annotated[
            Literal["running", "completed", "failed", "crashed"] | None, Field(description="only runs in this state")
        ] = None,
        name: Annotated[str | None, Field(description="only runs whose name contains this text")] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="at most this many runs, newest first")] = 50,
    ) -> RunList:
        """The training runs under the root, newest first: status, steps, last training loss, age."""
        from trainatlas.tools.runs import list_runs as runs_under_root

        rows = runs_under_root(state.catalog(), project, status, name)
        listed = [RunRow(**{**r, "started_at": r["started_at"] and r["started_at"].isoformat()}) for r in rows]
        return RunList(runs=listed[:limit], total=len(rows), truncated=len(rows) > limit)

    @mcp.tool(title="Summarise a run", annotations=reads("Summarise a run"))
    @answers
    def run_summary(run: RunArg) -> RunSummary:
        """One run at a glance: status, config, environment, model and optimizer, every metric's last/min/max,
        layer-stat coverage, recent events, traceback if it failed, review status."""
        from trainatlas.tools.runs import run_details

        details = state.answer(("run_summary", run), lambda: run_details(state.catalog(), run))
        return RunSummary.model_validate(details)

    @mcp.tool(name="diagnose", title="Diagnose a run", annotations=reads("Diagnose a run"))
    @answers
    def diagnose_tool(
        run: RunArg,
        checks: Annotated[
            list[str] | None, Field(description="diagnostic codes to run, e.g. ['loss_divergence']; default all")
        ] = None,
    ) -> Diagnosis:
        """Run the diagnostic checks on a run: issues (code, severity, message with numbers, evidence, first step,
        fix_prompt to act on), health score 0-100, phase, ETA and early-stop recommendation."""
        from trainatlas.tools.report import diagnose

        key = ("diagnose", run, tuple(checks or ()))
        return state.answer(key, lambda: diagnose(state.catalog(), run, checks))

    @mcp.tool(title="Training phase, ETA and stop advice", annotations=reads("Training phase, ETA and stop advice"))
    @answers
    def training_status(run: RunArg) -> Status:
        """Where a run is: training phase and its transitions with reasons, ETA with a range, forecast of the final
        main metric with an 80% interval, and early-stop advice with what stopping now would save."""
        from trainatlas.tools.report import status

        return state.answer(("training_status", run), lambda: status(state.catalog(), run))

    @mcp.tool(name="sustainability_report", title="Energy, CO2 and cost", annotations=reads("Energy, CO2 and cost"))
    @answers
    def sustainability_tool(
        run: RunArg,
        carbon_price_eur_per_t: Annotated[
            float, Field(ge=0, le=10_000, description="carbon price in EUR per tonne of CO2, for the cost")
        ] = 50.0,
    ) -> SustainabilityReport:
        """Energy (kWh), CO2 (kg), cost, grade A-F with its rule, energy spent after convergence, idle accelerator
        time and recommendations; measured by CodeCarbon when it ran, else estimated (and labelled so)."""
        from trainatlas.tools.sustainability import sustainability_report

        key = ("sustainability_report", run, carbon_price_eur_per_t)
        return state.answer(key, lambda: sustainability_report(state.catalog(), run, carbon_price_eur_per_t))

    @mcp.tool(title="Compare two runs", annotations=reads("Compare two runs"))
    @answers
    def compare_runs(
        run_a: Annotated[str, Field(description="the reference run: id, name or unique id prefix")],
        run_b: Annotated[str, Field(description="the run compared with it (another run)")],
    ) -> Comparison:
        """Two runs side by side: config differences, main metrics (final, best, step of best), speed, curves
        aligned by step, issues only one has, and a verdict naming the config change that most likely explains
        the difference."""
        from trainatlas.tools.compare import compare

        return state.answer(("compare_runs", run_a, run_b), lambda: compare(state.catalog(), run_a, run_b))

    @mcp.tool(title="Metric curves", annotations=reads("Metric curves"))
    @answers
    def get_metric_series(
        run: RunArg,
        keys: Annotated[list[str], Field(min_length=1, max_length=10, description="e.g. ['train/loss', 'lr']")],
        start_step: Annotated[int | None, Field(description="first step, inclusive (default: the first)")] = None,
        end_step: Annotated[int | None, Field(description="last step, inclusive (default: the last)")] = None,
        max_points: Annotated[int, Field(ge=3, le=2000, description="at most this many points per key")] = 300,
    ) -> MetricSeries:
        """Metric curves of a run over a step range, downsampled with LTTB to at most max_points per key (spikes
        kept). An unknown key gets an error listing the run's keys."""
        from trainatlas.tools.series import metric_series

        key = ("get_metric_series", run, tuple(keys), start_step, end_step, max_points)
        series = state.answer(key, lambda: metric_series(state.catalog(), run, keys, start_step, end_step, max_points))
        return MetricSeries.model_validate(series)

    @mcp.tool(title="Per-layer health", annotations=reads("Per-layer health"))
    @answers
    def layer_health(
        run: RunArg,
        step: Annotated[
            int | None, Field(description="step to show (default: the latest); else the sampled step before it")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=300, description="at most this many layers, flagged first")] = 100,
    ) -> LayerHealth:
        """Per-layer statistics at a sampled step, flagged layers first: gradient and weight norms, update ratio,
        activation mean/std, zero/dead/saturated fractions, training mode."""
        from trainatlas.tools.series import layer_health as layer_stats

        stats = state.answer(("layer_health", run, step, limit), lambda: layer_stats(state.catalog(), run, step, limit))
        return LayerHealth.model_validate({"note": None, **stats})

    @mcp.tool(title="Run events", annotations=reads("Run events"))
    @answers
    def list_events(
        run: RunArg,
        kinds: Annotated[
            list[str] | None, Field(description="alert, checkpoint, lifecycle, observer, phase (default: all)")
        ] = None,
        min_severity: Annotated[
            Literal["info", "warning", "critical"] | None, Field(description="only events this severe or worse")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="at most this many events, newest first")] = 100,
    ) -> EventList:
        """A run's events, newest first: alerts (non-finite loss...), phase changes (kind 'phase', replayed
        from the loss curve, so not in query_sql's events table), channels switched off."""
        from trainatlas.tools.series import list_events as events_of

        return EventList.model_validate(events_of(state.catalog(), run, kinds, min_severity, limit))

    @mcp.tool(title="Read-only SQL over all runs", annotations=reads("Read-only SQL over all runs"))
    @answers
    def query_sql(
        sql: Annotated[str, Field(max_length=20_000, description="one SELECT over runs, scalars, layers, events")],
        max_rows: Annotated[int, Field(ge=1, le=1000, description="at most this many rows")] = 200,
        timeout_s: Annotated[float, Field(gt=0, le=60, description="stop the query after this many seconds")] = 10.0,
    ) -> QueryAnswer:
        """Read-only DuckDB SQL over every run (read trainatlas://schema for tables, columns and examples). One
        SELECT only; no files outside the root, no writes, no settings; rows and characters capped; stopped after
        timeout_s."""
        from trainatlas.store.sandbox import SQLRejected, run_select

        if not SQL_SLOTS.acquire(timeout=SQL_WAIT_S):
            raise ToolError(
                f"the server is already running {SQL_AT_ONCE} queries (the most it runs at once): "
                "retry when one has finished, or give them a lower timeout_s"
            )
        try:
            result = run_select(state.sandbox().con, sql, timeout_s, max_rows)
        except SQLRejected as exc:
            raise ToolError(f"query refused: {exc}") from exc
        finally:
            SQL_SLOTS.release()
        rows, chars, note = [], 0, None
        for row in result.rows:
            cells = [c if isinstance(c, int | float | str | bool) or c is None else str(c) for c in row]
            chars += len(json.dumps(cells, default=str))
            if chars > SQL_MAX_CHARS:
                note = f"stopped at {len(rows)} rows: the answer reached {SQL_MAX_CHARS:,} characters"
                break
            rows.append(cells)
        truncated = result.truncated or note is not None
        if result.truncated and note is None:
            note = f"only the first {max_rows} rows: aggregate in SQL or raise max_rows"
        return QueryAnswer(columns=result.columns, rows=rows, row_count=len(rows), truncated=truncated, note=note)

    @mcp.tool(title="Plot metrics", annotations=reads("Plot metrics"), output_schema=PLOT_SCHEMA)
    @answers
    def plot_metrics(
        runs: Annotated[list[str], Field(min_length=1, max_length=8, description="run ids or names")],
        keys: PlotKeys = ["train/loss"],  # noqa: B006
        smoothing: Annotated[float, Field(ge=0, lt=1, description="EMA weight; 0 = raw only")] = 0.9,
        log_scale: Annotated[bool | None, Field(description="default: log when a curve spans decades")] = None,
    ) -> ToolResult:
        """A PNG plot of metrics of one or more runs (raw and EMA-smoothed, one panel per key), sent as image
        content; the structured answer holds what it shows (per curve: last, min, max and up to 100 points)."""
        from trainatlas.tools.plots import plot_metrics as draw_plot

        key = ("plot_metrics", tuple(runs), tuple(keys), smoothing, log_scale)
        png, data = state.answer(key, lambda: draw_plot(state.catalog(), runs, keys, smoothing, log_scale=log_scale))
        text = f"Plot of {', '.join(keys)} for {', '.join(runs)} ({len(png):,} bytes PNG)."
        image = ImageContent(type="image", data=_b64(png), mime_type="image/png")
        info = PlotInfo.model_validate({**data, "png_bytes": len(png)}).model_dump(mode="json")
        return ToolResult(content=[TextContent(type="text", text=text), image], structured_content=info)

    @mcp.tool(title="Record a belief", annotations=ToolAnnotations(title="Record a belief", **WRITES))
    @answers
    def record_belief(
        runs: Annotated[list[str], Field(min_length=1, max_length=8, description="the runs the belief is about")],
        hypothesis: Annotated[str, Field(min_length=1, max_length=2000, description="what is going on with the runs")],
        confidence: Annotated[float, Field(ge=0, le=1, description="0 = a guess, 1 = certain")],
        evidence: Annotated[list[str], Field(max_length=50, description="facts with numbers and steps")] = [],  # noqa: B006
        open_questions: OpenQuestions = [],  # noqa: B006
        next_action: Annotated[str | None, Field(description="what the user should do next")] = None,
        question: Annotated[str | None, Field(description="the user's question this answers")] = None,
    ) -> notes.BeliefRecord:
        """Save the current belief about one or more runs (hypothesis, confidence, evidence, open questions), so a
        later conversation or another client resumes from it (get_beliefs)."""
        belief = notes.Belief(hypothesis=hypothesis, confidence=confidence, evidence=evidence,
                              open_questions=open_questions, next_action=next_action)  # fmt: skip
        return notes.record_belief(state.catalog(), runs, belief, question=question)

    @mcp.tool(title="Belief history of a run", annotations=reads("Belief history of a run"))
    @answers
    def get_beliefs(
        run: RunArg, limit: Annotated[int, Field(ge=1, le=100, description="at most this many, the latest")] = 20
    ) -> Beliefs:
        """The belief history of a run, oldest first (the last is the current belief), and its review status."""
        return Beliefs.model_validate(notes.get_beliefs(state.catalog(), run, limit))

    review = ToolAnnotations(title="Set a run's review status", **{**WRITES, "idempotent_hint": True})

    @mcp.tool(title="Set a run's review status", annotations=review)
    @answers
    def set_review_status(
        run: RunArg,
        status: Annotated[
            Literal["pending", "approved", "quarantined"], Field(description="quarantined: do not use its results")
        ],
        note: Annotated[str | None, Field(max_length=2000, description="why, for the next reader")] = None,
    ) -> ReviewChange:
        """Mark a run pending, approved or quarantined (its results must not be used); kept in run.json."""
        return ReviewChange.model_validate(notes.set_review_status(state.catalog(), run, status, note))


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()
