"""The fixed slice of the diagnosis benchmark (one run per family, benchmarks/diagnosis) as a
regression guard: trained for real here, diagnosed, scored like `make bench-diagnosis` does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks" / "diagnosis"))

from score import HEALTHY, judge, mistakes, table
from suite import FAMILIES, regression_slice, specs
from train import train

# Step-time trends follow the machine's load (a shared CI runner), not the training: a warning
# from them on a healthy run is the machine's, and their own families may read as contention.
LOAD_DEPENDENT = {"throughput_degradation", "step_time_instability"}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    runs = regression_slice()
    return judge(runs, {spec.name: train(spec, root) for spec in runs}, root)


def test_the_benchmark_is_as_large_as_promised():
    runs = list(specs())
    assert len(runs) >= 300 and len(FAMILIES) >= 25
    assert len({r.name for r in runs}) == len(runs)
    assert sum(r.label == HEALTHY for r in runs) >= 100


def test_every_pathology_of_the_slice_is_found(outcomes):
    sick = [o for o in outcomes if o.spec.label != HEALTHY]
    missed = [o for o in sick if not o.found(o.ours) and not set(o.spec.hits) <= LOAD_DEPENDENT]
    assert not missed, "\n" + table(outcomes) + "\n" + "\n".join(mistakes(outcomes))


def test_no_healthy_run_of_the_slice_is_warned(outcomes):
    alarms = [o for o in outcomes if o.spec.label == HEALTHY and o.flagged(o.ours) - LOAD_DEPENDENT]
    assert not alarms, "\n".join(mistakes(outcomes))


def test_trainatlas_beats_the_rule_baseline_on_the_slice(outcomes):
    sick = [o for o in outcomes if o.spec.label != HEALTHY]
    assert sum(o.found(o.ours) for o in sick) >= sum(o.found(o.baseline) for o in sick) + len(sick) // 2
