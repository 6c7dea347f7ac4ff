"""The CLI: `runs`, `show`, `sql`, `demo`, each as a table and as JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from conftest import observer, train

from trainatlas.cli import main


@pytest.fixture
def two_runs(root):
    with observer(root, name="first", config={"lr": 0.05}) as a:
        train(a, steps=10)
    with pytest.raises(RuntimeError), observer(root, name="second") as b:
        train(b, steps=4)
        raise RuntimeError("boom")
    return a, b


def run_json(capsys, *argv: str):
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_runs_lists_newest_first_with_last_loss(two_runs, root, capsys):
    a, b = two_runs
    code, rows = run_json(capsys, "runs", "--root", str(root))
    assert code == 0
    assert [r["name"] for r in rows] == ["second", "first"]
    assert [r["status"] for r in rows] == ["failed", "completed"]
    assert rows[1]["steps"] == 10 and rows[1]["last_loss"] > 0
    assert rows[0]["age_s"] >= 0
    code, rows = run_json(capsys, "runs", "--root", str(root), "--status", "completed")
    assert [r["name"] for r in rows] == ["first"]


def test_runs_table_has_the_documented_columns(two_runs, root, capsys):
    assert main(["runs", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    for column in ("project", "name", "id", "status", "steps", "last loss", "age"):
        assert column in out
    assert two_runs[0].run_id in out


def test_show_by_name_and_by_path(two_runs, root, capsys):
    a, b = two_runs
    code, details = run_json(capsys, "show", "first", "--root", str(root))
    assert code == 0 and details["run"]["run_id"] == a.run_id
    loss = next(m for m in details["metrics"] if m["key"] == "train/loss")
    assert loss["n"] == 10 and loss["last_step"] == 10
    assert details["config"] == {"lr": 0.05}
    code, details = run_json(capsys, "show", str(b.dir), "--root", str(root))
    assert details["run"]["status"] == "failed" and "RuntimeError: boom" in details["traceback"]
    assert main(["show", "first", "--root", str(root)]) == 0
    assert "train/loss" in capsys.readouterr().out


def test_unknown_run_is_a_clear_error(root, capsys):
    root.mkdir()
    code, payload = run_json(capsys, "show", "missing", "--root", str(root))
    assert code == 2 and "no run 'missing'" in payload["error"]


@pytest.mark.parametrize("argv", [["runs"], ["show", "x"], ["sql", "SELECT 1"], ["diagnose", "x"], ["status", "x"],
                                  ["check", "x"], ["compare", "x", "y"], ["carbon", "x"], ["watch", "x", "--once"]])
def test_a_root_that_does_not_exist_is_an_error_not_an_empty_table(argv, tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert main([*argv, "--root", str(missing)]) == 2
    captured = capsys.readouterr()
    assert f"root {missing} does not exist" in captured.err and not captured.out


def test_a_name_several_runs_share_means_the_newest(root, capsys):
    made = []
    for _ in range(2):  # `make demo` twice: two runs named "healthy"
        with observer(root, name="healthy") as obs:
            train(obs, steps=3)
        made.append(obs.run_id)
    code, details = run_json(capsys, "show", "healthy", "--root", str(root))
    assert code == 0 and details["run"]["run_id"] == made[1]
    code, result = run_json(capsys, "status", "healthy", "--root", str(root))
    assert code == 0 and result["run"]["run_id"] == made[1]


def test_sql_answers_and_refuses_writes(two_runs, root, capsys):
    code, result = run_json(
        capsys, "sql", "SELECT r.name, max(s.step) AS last FROM scalars s JOIN runs r USING (run_id) "
        "GROUP BY 1 ORDER BY 1", "--root", str(root),
    )  # fmt: skip
    assert code == 0 and result["columns"] == ["name", "last"]
    assert result["rows"] == [["first", 10], ["second", 4]]
    code, result = run_json(capsys, "sql", f"COPY runs TO '{root}/leak.csv'", "--root", str(root))
    assert code == 2 and "single SELECT" in result["error"]
    assert not (root / "leak.csv").exists()


def test_demo_trains_one_healthy_and_two_buggy_runs(root, capsys):
    code, result = run_json(capsys, "demo", "--root", str(root), "--steps", "150")
    assert code == 0
    runs = {r["name"]: r for r in result["runs"]}
    assert set(runs) == {"healthy", "lr-too-high", "dead-relu"}
    assert all(r["status"] == "completed" and r["steps"] == 150 for r in runs.values())
    figures = {r["name"]: f for r, f in zip(result["runs"][::-1], result["figures"], strict=True)}
    healthy, diverged, dead = figures["healthy"], figures["lr-too-high"], figures["dead-relu"]
    assert healthy["final_loss"] < 0.5 and healthy["best_val_acc"] > 0.9
    assert healthy["first_nonfinite_step"] is None and healthy["dead_relu_frac"] < 0.5
    assert diverged["first_nonfinite_step"] is not None and math.isnan(diverged["final_loss"])
    assert dead["dead_relu_frac"] == 1.0 and dead["final_loss"] > 2.0


def test_cli_and_catalog_work_without_torch(two_runs, root):
    code = f"""
import sys, json
sys.modules["torch"] = None  # any `import torch` now fails
import trainatlas
from trainatlas.cli import main
con = trainatlas.open_catalog({str(root)!r})
assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)
for argv in (["runs"], ["show", "first"], ["sql", "SELECT count(*) FROM scalars"]):
    assert main([*argv, "--root", {str(root)!r}, "--json"]) == 0
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_events_lists_each_phase_transition_next_to_stored_events(root):
    """DESIGN: each phase transition is an event row. `events` (a subprocess, the real CLI) lists them
    with the run's stored events, newest first, and they agree with `status`'s phase history."""
    with observer(root, name="phases") as obs:
        train(obs, steps=200)

    def cli(*argv: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "trainatlas", *argv, "--root", str(root), "--json"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    events = cli("events", "phases")["events"]
    phases = [e for e in events if e["kind"] == "phase"]
    history = cli("status", "phases")["transitions"]
    assert len(phases) >= 2 and [e["code"] for e in reversed(phases)] == [t["code"] for t in history]
    assert {"lifecycle"} <= {e["kind"] for e in events}  # the stored run_completed row is still there
    assert [e["ts"] for e in events] == sorted((e["ts"] for e in events), reverse=True)
    first = json.loads(phases[-1]["payload"])
    assert first["previous"] is None and json.loads(phases[0]["payload"])["previous"] == phases[1]["code"]
    assert all(set(e) == {"step", "ts", "kind", "code", "severity", "message", "payload"} for e in events)
    assert {e["kind"] for e in cli("events", "phases", "--kind", "phase")["events"]} == {"phase"}
    assert not any(e["kind"] == "phase" for e in cli("events", "phases", "--min-severity", "warning")["events"])
