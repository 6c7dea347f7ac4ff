"""The shapes of the answers trainatlas gives (diagnosis, status, forecast, comparison,
sustainability): pydantic models only, so the CLI, the MCP server (for its output schemas) and the
agent can import them without loading numpy or DuckDB; the analysis that fills them lives beside."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from trainatlas.tools.rundata import RunData

Severity = Literal["critical", "warning", "info"]
IMPROVEMENT_THRESHOLD = 0.01  # "worth continuing" = the metric still improves by more than 1%
GRADE_RULE = (
    "Grid intensity sets the base grade (A < 100, B < 200, C < 300, D < 450, E < 600, F >= 600 g CO2/kWh); "
    "one grade lower when >= 30% of the energy came after convergence, and one lower for an idle accelerator."
)

STOPPING = ("consider_stopping", "stop_now")  # the recommendations that quote what stopping now would save


class Issue(BaseModel):
    """One problem found in a run, with the figures it rests on and what to do about it."""

    code: str = Field(description="stable snake_case id, e.g. loss_divergence")
    severity: Severity
    title: str
    message: str = Field(description="plain words with the numbers")
    evidence: dict[str, Any] = Field(default_factory=dict, description="the figures and steps it rests on")
    first_step: int | None = Field(default=None, description="step where the problem began")
    fix_prompt: str = Field(description="an instruction an agent can act on")


class Skipped(BaseModel):
    code: str
    reason: str


class ETA(BaseModel):
    total_steps: int
    done_steps: int
    remaining_steps: int
    step_time_s: float = Field(description="mean seconds per step over the last 30% of the run")
    seconds: float
    low_s: float = Field(description="10th percentile of the remaining time")
    high_s: float = Field(description="90th percentile of the remaining time")
    finish_at: str


class Savings(BaseModel):
    seconds: float
    energy_kwh: float
    co2_kg: float
    cost_eur: float = Field(description="carbon cost at the configured price per tonne")
    estimated: bool = Field(description="true when power is an estimate, not a measurement")
    basis: str


class Advice(BaseModel):
    recommendation: Literal["continue", "consider_stopping", "stop_now", "finished"] = Field(
        description="finished: the run trains no more (it ended, or reached its planned length)"
    )
    reason: str
    probability_of_improvement: float | None = Field(
        default=None, description="chance the remaining budget improves the main metric by more than the threshold"
    )
    threshold: float = IMPROVEMENT_THRESHOLD
    best_step: int | None = None
    best_value: float | None = None
    savings: Savings | None = None


class CurveFit(BaseModel):
    """One member of the ensemble, with ``x = (step + offset) / (target_step + offset)`` (offset makes
    the first step at least 1). For a linear family (``pow3``: metric = a + b*x^-c) ``a`` and ``b``
    are in the metric's own units; for a ``-log`` one, log(y) = a + b*g(x) in the working units
    (y = the metric if lower is better, 1 - metric for a [0, 1] metric, else -metric).
    ``holdout_error`` is in the metric's units."""

    family: str
    params: dict[str, float]
    weight: float
    holdout_error: float


class Forecast(BaseModel):
    target_step: int
    value: float  # point forecast at target_step
    low: float  # 80% prediction interval
    high: float
    current: float  # robust current level: median of the last ~5% of points
    best_so_far: float  # best smoothed level so far (min when lower is better)
    fits: list[CurveFit]
    method: str


class ConfigChange(BaseModel):
    key: str
    a: Any
    b: Any


class MetricComparison(BaseModel):
    key: str
    lower_is_better: bool
    final_a: float | None
    final_b: float | None
    best_a: float | None
    best_b: float | None
    best_step_a: int | None
    best_step_b: int | None


class Comparison(BaseModel):
    a: RunRef
    b: RunRef
    config_changes: list[ConfigChange]
    metrics: list[MetricComparison]
    speed: dict[str, float | None] = Field(description="median seconds per step and samples per second")
    curves: dict[str, dict[str, list[float | None]]] = Field(description="metric -> steps, a, b aligned by step")
    only_a: list[str] = Field(description="issue codes only run A has")
    only_b: list[str]
    both: list[str]
    health: dict[str, int]
    verdict: str


class SustainabilityReport(BaseModel):
    run: RunRef
    measured: bool = Field(description="false when energy is an estimate (device power x time)")
    basis: str
    duration_s: float
    energy_kwh: float
    co2_kg: float
    intensity_g_per_kwh: float
    power_w: dict[str, float] = Field(description="average power by component, when measured")
    cost_eur: float = Field(description="carbon cost at carbon_price_eur_per_t")
    carbon_price_eur_per_t: float
    grade: str
    grade_rule: str = GRADE_RULE
    convergence_step: int | None
    energy_after_convergence_kwh: float | None
    share_after_convergence: float | None
    idle_accelerator_s: float | None
    recommendations: list[str]


class RunRef(BaseModel):
    run_id: str
    name: str
    project: str
    status: str
    steps: int
    path: str

    @classmethod
    def of(cls, data: RunData) -> RunRef:
        return cls(**{k: data.run[k] for k in cls.model_fields})


class Diagnosis(BaseModel):
    run: RunRef
    health_score: int = Field(description="100 minus severity weights (critical 30, warning 10, info 2)")
    phase: str
    issues: list[Issue]
    skipped: list[Skipped] = Field(description="checks that lacked the data they need")
    eta: ETA | None
    recommendation: Advice


class MetricForecast(BaseModel):
    metric: str
    lower_is_better: bool
    forecast: Forecast


class Status(BaseModel):
    run: RunRef
    phase: str
    transitions: list[dict[str, Any]] = Field(description="phase changes with their reasons, oldest first")
    eta: ETA | None
    forecast: MetricForecast | None
    recommendation: Advice
