"""Output models of the tools whose analysis answers with a plain dict: the client gets a typed output
schema (fields, types, what a null means) instead of ``{"type": "object"}``, and every answer is
checked against it before it leaves the server."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from trainatlas.tools.annotations import BeliefRecord


class RunBrief(BaseModel):
    run_id: str
    name: str
    project: str
    status: str = Field(description="running, completed, failed or crashed")
    steps: int
    path: str


class MetricSummary(BaseModel):
    key: str
    n: int = Field(description="values logged")
    first_step: int
    last_step: int
    last: float | None = Field(description="value at the last step; null when not finite")
    min: float | None
    max: float | None


class LayerCoverage(BaseModel):
    layers: int = Field(description="layers with statistics")
    sampled_steps: int = Field(description="steps at which the layers were sampled")


class EventBrief(BaseModel):
    step: int | None
    kind: str
    code: str
    severity: str
    message: str


class RunSummary(BaseModel):
    run: RunBrief
    started_at: datetime | None
    ended_at: datetime | None
    config: dict[str, Any] | None = Field(description="the run's config as logged; null: none logged")
    environment: dict[str, Any] | None = Field(description="host, versions, devices; null: not recorded")
    model: dict[str, Any] = Field(description="parameter counts and architecture, without the module list")
    optimizer: dict[str, Any] | None
    total_steps: int | None = Field(description="planned steps, when the run declared them")
    metrics: list[MetricSummary]
    layers: LayerCoverage
    events: list[EventBrief] = Field(description="the 20 most recent stored events")
    traceback: str | None = Field(description="the traceback of a failed run")
    channels_off: dict[str, Any] = Field(description="recording channels switched off after an internal error")


class Series(BaseModel):
    key: str
    points_in_range: int = Field(description="points logged in the step range, before downsampling")
    steps: list[int]
    values: list[float]
    nonfinite_steps: list[int] = Field(description="steps whose value was NaN or infinite (the first 100)")
    downsampled: bool


class MetricSeries(BaseModel):
    run_id: str
    series: list[Series] = Field(description="one per requested key, in the order asked")


class LayerRow(BaseModel):
    step: int
    layer: str
    position: int | None = Field(default=None, description="order in the model, first = 0")
    module_type: str | None = None
    param_count: int | None = None
    training: bool | None = None
    grad_norm: float | None = Field(default=None, description="null: the layer got no gradient")
    weight_norm: float | None = None
    update_ratio: float | None = Field(default=None, description="||w_after - w_before|| / ||w_before|| over a step")
    act_mean: float | None = None
    act_std: float | None = None
    act_zero_frac: float | None = Field(default=None, description="share of output elements exactly 0")
    act_dead_frac: float | None = Field(default=None, description="share of units that are 0 for the whole batch")
    act_sat_frac: float | None = Field(default=None, description="share of saturated activations")
    flags: list[str] = Field(description="dead, saturated, vanishing_gradient")


class LayerHealth(BaseModel):
    run_id: str
    step: int | None = Field(description="the sampled step shown; null when the run has no layer statistics")
    sampled_steps: int
    layers: list[LayerRow] = Field(description="flagged layers first")
    truncated: bool
    flag_meaning: dict[str, str] = Field(default_factory=dict)
    note: str | None = Field(description="why the step shown is not the one asked for, or why there are no layers")


class Event(BaseModel):
    step: int | None
    ts: float | None = Field(description="unix seconds")
    kind: str = Field(description="alert, checkpoint, lifecycle, observer or phase (derived from the loss curve)")
    code: str
    severity: str = Field(description="info, warning or critical")
    message: str
    payload: str | None = Field(description="JSON text")


class EventList(BaseModel):
    run_id: str
    events: list[Event] = Field(description="newest first")
    truncated: bool


class Review(BaseModel):
    status: str = Field(description="pending, approved or quarantined")
    note: str | None = None
    at: str | None = Field(default=None, description="when it was set, ISO 8601 UTC")


class Beliefs(BaseModel):
    run_id: str
    beliefs: list[BeliefRecord] = Field(description="oldest first; the last is the current belief")
    total: int
    skipped_lines: int = Field(description="unreadable lines of beliefs.jsonl")
    review: Review | None


class ReviewChange(BaseModel):
    run_id: str
    review: Review
    previous_status: str | None


class CurveSummary(BaseModel):
    run_id: str
    points: int = Field(description="points plotted")
    last: float | None = None
    last_smoothed: float | None = None
    min: float | None = None
    min_step: int | None = None
    max: float | None = None
    data: list[tuple[int, float, float]] = Field(
        default_factory=list, description="[step, value, smoothed], at most 100 rows"
    )


class Panel(BaseModel):
    key: str
    log_scale: bool
    curves: list[CurveSummary]


class PlotInfo(BaseModel):
    """What the PNG (sent as image content) shows, for a model that cannot see it."""

    panels: list[Panel]
    smoothing: float
    png_bytes: int
