"""Phases, ETA, forecast, early-stop advice, sustainability, comparison and their CLI faces."""

from __future__ import annotations

import json
import time

import pytest
import torch
from scenarios import mlp, record
from torch import nn

import trainatlas
from trainatlas.cli import main
from trainatlas.store.catalog import Catalog
from trainatlas.tools.compare import compare
from trainatlas.tools.phases import PhaseTracker, Window, phase_history
from trainatlas.tools.report import diagnose, status
from trainatlas.tools.rundata import RunData
from trainatlas.tools.sustainability import sustainability_report


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    healthy = record(root, "healthy", model=mlp())
    model = mlp(nn.LeakyReLU)
    diverged = record(
        root, "diverged", model=model, lr=1.0, optimizer=torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    )
    return root, healthy, diverged


def run_cli(capsys, *argv):
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_phase_transitions_carry_reasons(runs):
    root, healthy, diverged = runs
    catalog = Catalog(root)
    good = phase_history(RunData.load(catalog, healthy))
    assert good.transitions[0].phase == "INITIALIZING"
    assert "LEARNING_FAST" in [t.phase for t in good.transitions]
    assert "DIVERGING" not in [t.phase for t in good.transitions]
    bad = phase_history(RunData.load(catalog, diverged))
    assert bad.phase == "DIVERGING" and "non-finite" in bad.transitions[-1].reason


def test_phase_tracker_is_incremental():
    tracker = PhaseTracker()
    levels = [2.3, 2.2, 1.6, 1.1, 0.8, 0.6, 0.5, 0.45, 0.449, 0.449, 0.4489, 0.4489, 0.4489, 0.4488]
    seen = [tracker.update(Window(end_step=(i + 1) * 10, loss=v)) for i, v in enumerate(levels)]
    assert seen[0] == "INITIALIZING" and "LEARNING_FAST" in seen and seen[-1] == "CONVERGED"
    assert tracker.update(Window(end_step=200, loss=float("nan"))) == "DIVERGING"
    assert [t.previous for t in tracker.transitions][1:] == [t.phase for t in tracker.transitions][:-1]


def test_status_of_a_live_run_has_eta_forecast_and_advice(tmp_path):
    x = torch.randn(512, 8)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    obs = trainatlas.Observer("tests", "live", tmp_path, carbon=False, flush_every_s=0.1)
    obs.watch(model, opt, total_steps=1000)
    for step in range(300):
        loss = nn.functional.cross_entropy(
            model(x[step % 8 * 64 : step % 8 * 64 + 64]), y[step % 8 * 64 : step % 8 * 64 + 64]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        obs.step(loss=loss, batch_size=64)
        time.sleep(0.002)
    time.sleep(0.3)
    try:
        result = status(Catalog(tmp_path), "live")
        assert result.run.status == "running"
        eta = result.eta
        assert eta.total_steps == 1000 and eta.remaining_steps == 1000 - eta.done_steps
        assert eta.low_s <= eta.seconds <= eta.high_s and eta.seconds > 0.7 * eta.remaining_steps * 0.002
        assert result.forecast.metric == "train/loss" and result.forecast.forecast.target_step == 1000
        advice = result.recommendation
        assert advice.recommendation in {"continue", "consider_stopping", "stop_now"}
        assert 0 <= advice.probability_of_improvement <= 1
        assert advice.savings.seconds == pytest.approx(eta.seconds) and advice.savings.estimated
        assert advice.savings.co2_kg == pytest.approx(advice.savings.energy_kwh * 0.4)
    finally:
        obs.close()


def test_diverged_run_is_told_to_stop_with_savings_when_planned_longer(runs):
    root, _, diverged = runs
    result = diagnose(Catalog(root), diverged)
    assert result.recommendation.recommendation == "stop_now"
    assert "diverging" in result.recommendation.reason.lower() or "NaN" in result.recommendation.reason


def test_diagnose_json_has_the_contract_shape(runs, capsys):
    root, healthy, diverged = runs
    code, payload = run_cli(capsys, "diagnose", diverged, "--root", str(root))
    assert code == 0
    assert {"run", "health_score", "phase", "issues", "eta", "recommendation"} <= set(payload)
    issue = payload["issues"][0]
    assert set(issue) == {"code", "severity", "title", "message", "evidence", "first_step", "fix_prompt"}
    assert payload["issues"][0]["severity"] == "critical"  # most severe first
    code, payload = run_cli(capsys, "diagnose", healthy, "--root", str(root), "--checks", "dead_relu,no_learning")
    assert payload["issues"] == [] and payload["health_score"] == 100


def test_check_exit_codes_gate_ci(runs, capsys):
    root, healthy, diverged = runs
    assert main(["check", diverged, "--root", str(root), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["passed"] is False
    assert main(["check", healthy, "--root", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True


def test_compare_names_the_config_change_and_the_problems(runs, capsys):
    root, healthy, diverged = runs
    c = compare(Catalog(root), healthy, diverged)
    assert c.config_changes[0].key == "lr" and (c.config_changes[0].a, c.config_changes[0].b) == (1e-3, 1.0)
    code, payload = run_cli(capsys, "compare", "healthy", "diverged", "--root", str(root))
    assert code == 0 and "nonfinite_loss" in payload["only_b"] and not payload["only_a"]
    assert payload["verdict"].startswith("Run A (healthy) is better")
    curve = payload["curves"]["val/loss"]
    assert len(curve["steps"]) == len(curve["a"]) == len(curve["b"])


def test_sustainability_report_estimates_without_a_meter(runs, capsys):
    root, healthy, _ = runs
    report = sustainability_report(Catalog(root), healthy)
    assert not report.measured and "estimate" in report.basis
    assert report.energy_kwh == pytest.approx(65 * report.duration_s / 3.6e6)
    assert report.co2_kg == pytest.approx(report.energy_kwh * 0.4)
    assert report.grade in "ABCDEF" and report.recommendations
    code, payload = run_cli(capsys, "carbon", "healthy", "--root", str(root), "--carbon-price", "100")
    assert code == 0 and payload["cost_eur"] == pytest.approx(payload["co2_kg"] / 1000 * 100)


def test_sustainability_report_uses_codecarbon_when_it_ran(tmp_path, monkeypatch):
    pytest.importorskip("codecarbon")
    monkeypatch.setenv("TRAINATLAS_CARBON_COUNTRY", "FRA")
    run_id = record(tmp_path, "measured", model=mlp(), steps=100, carbon=True)
    report = sustainability_report(Catalog(tmp_path), run_id)
    assert report.measured and report.energy_kwh > 0 and report.grade == "A"  # France: about 56 g/kWh
    assert set(report.power_w) >= {"cpu_w", "ram_w"}
