"""The Observer on real tiny training runs: what lands in Parquet and how it reads back in DuckDB."""

from __future__ import annotations

import json
import math
import statistics
import time
import warnings

import pyarrow.parquet as pq
import pytest
import torch
from conftest import data, mlp, observer, train
from torch import nn

import trainatlas


def scalar_series(root, run_id: str, key: str) -> list[tuple[int, float]]:
    con = trainatlas.open_catalog(root)
    return con.execute(
        "SELECT step, value FROM scalars WHERE run_id = ? AND key = ? ORDER BY step", [run_id, key]
    ).fetchall()


def test_per_step_scalars_match_the_training(root):
    with observer(root, name="basic", config={"lr": 0.05}) as obs:
        losses = train(obs, steps=40)
    series = scalar_series(root, obs.run_id, "train/loss")
    assert [s for s, _ in series] == list(range(1, 41))
    assert [v for _, v in series] == pytest.approx(losses, rel=1e-6)
    con = trainatlas.open_catalog(root)
    keys = {k for (k,) in con.execute("SELECT DISTINCT key FROM scalars").fetchall()}
    assert {"train/loss", "lr", "grad_norm", "time/step_s", "time/data_s", "batch_size"} <= keys
    assert {"throughput/samples_per_s"} <= keys
    lr = con.execute("SELECT min(value), max(value), list(step ORDER BY step) FROM scalars WHERE key = 'lr'").fetchone()
    assert lr == (0.05, 0.05, [1, 11, 21, 31])  # read every LR_EVERY steps
    run = con.execute("SELECT name, status, steps, config->>'lr' FROM runs").fetchone()
    assert run == ("basic", "completed", 40, "0.05")


def test_grad_norm_equals_torch_clip_grad_norm(root):
    model = mlp()
    norms = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            norms.append(float(nn.utils.get_total_norm([p.grad for p in model.parameters()])))
            return super().step(closure)

    with observer(root, grad_norm_every=1) as obs:
        train(obs, model=model, steps=10, optimizer=Spy(model.parameters(), lr=0.05))
    recorded = [v for _, v in scalar_series(root, obs.run_id, "grad_norm")]
    assert recorded == pytest.approx(norms, rel=1e-5)


def test_adaptive_grad_norm_stays_within_its_budget(root):
    with observer(root) as obs:  # grad_norm_every=None: only while it costs < 0.1% of step time
        train(obs, steps=200, before_step=lambda s: time.sleep(0.001) if s % 2 else None)
    computed = len(scalar_series(root, obs.run_id, "grad_norm"))
    assert 1 <= computed < 200


def test_learning_rate_of_every_param_group_and_schedule(root):
    model = mlp()
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.1}, {"params": list(model[2:].parameters()), "lr": 0.01}]
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    with observer(root) as obs:
        obs.watch(model, opt)
        for _ in range(25):
            opt.step()
            obs.step(loss=1.0)
            sched.step()
    lr0 = dict(scalar_series(root, obs.run_id, "lr"))
    lr1 = dict(scalar_series(root, obs.run_id, "lr/group1"))
    assert sorted(lr0) == sorted(lr1) == [1, 11, 21]
    assert lr0[1] == pytest.approx(0.1) and lr1[1] == pytest.approx(0.01)
    assert lr0[11] == pytest.approx(0.1 * 0.5**2) and lr1[21] == pytest.approx(0.01 * 0.5**4)


def test_data_wait_is_the_time_before_the_forward(root):
    with observer(root) as obs:
        train(obs, steps=12, before_step=lambda s: time.sleep(0.02))
    waits = [v for _, v in scalar_series(root, obs.run_id, "time/data_s")]
    steps = [v for _, v in scalar_series(root, obs.run_id, "time/step_s")]
    assert len(waits) == 11 and min(waits) >= 0.019
    assert all(w <= s for w, s in zip(waits, steps, strict=True))


def test_epoch_and_logged_metrics_at_the_current_step(root):
    with observer(root) as obs:
        for step in range(6):
            obs.step(loss=torch.tensor(1.0 / (step + 1)), epoch=step // 3)
            if step % 3 == 2:
                obs.log({"val/loss": torch.tensor(0.5), "val/acc": 0.75})
    assert scalar_series(root, obs.run_id, "val/acc") == [(3, 0.75), (6, 0.75)]
    assert [v for _, v in scalar_series(root, obs.run_id, "epoch")] == [0, 0, 0, 1, 1, 1]


def test_layer_stats_are_sampled_every_n_steps(root):
    with observer(root, sample_every=10) as obs:
        train(obs, steps=30)
    con = trainatlas.open_catalog(root)
    steps = [s for (s,) in con.execute("SELECT DISTINCT step FROM layers ORDER BY 1").fetchall()]
    assert steps == [1, 10, 20, 30]
    rows = con.execute(
        "SELECT layer, module_type, param_count, training, grad_norm, weight_norm, update_ratio "
        "FROM layers WHERE step = 10 ORDER BY layer"
    ).fetchall()
    assert [r[:3] for r in rows] == [
        ("0", "Linear", 8 * 32 + 32), ("1", "ReLU", 0), ("2", "Linear", 32 * 32 + 32),
        ("3", "ReLU", 0), ("4", "Linear", 32 * 3 + 3),
    ]  # fmt: skip
    linear = [r for r in rows if r[1] == "Linear"]
    assert all(r[3] is True and r[4] > 0 and r[5] > 0 and 0 < r[6] < 1 for r in linear)


def test_update_ratio_is_lr_times_grad_over_weight_for_sgd(root):
    model = nn.Linear(8, 3)
    with observer(root, sample_every=5) as obs:
        train(obs, model=model, steps=5, lr=0.1)
        w_before = model.weight.detach().clone()
    con = trainatlas.open_catalog(root)
    grad_norm, weight_norm, ratio = con.execute(
        "SELECT grad_norm, weight_norm, update_ratio FROM layers WHERE step = 5"
    ).fetchone()
    assert weight_norm == pytest.approx(
        float(torch.cat([w_before.flatten(), model.bias.detach().flatten()]).norm()), rel=1e-5
    )
    assert ratio == pytest.approx(0.1 * grad_norm / weight_norm, rel=0.05)


def assert_rows(rows: list[tuple], expected: list[tuple], rel: float = 1e-6) -> None:
    """Rows of numbers and NULLs (None) equal to ``expected`` within ``rel``."""
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert [v is None for v in row] == [v is None for v in want], (row, want)
        assert [v for v in row if v is not None] == pytest.approx([v for v in want if v is not None], rel=rel)


class ToDouble(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


def test_layer_norms_combine_their_parameters_hand_computed(root):
    """Per-parameter norms are combined into per-layer ones: weight and bias together, a frozen
    bias counts in the weight norm but has no gradient, a frozen layer has none at all (NULL)."""
    model = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1), ToDouble(), nn.Linear(1, 1).double())
    with torch.no_grad():
        for layer, w, b in ((model[0], [[3.0, 4.0]], [12.0]), (model[2], [[2.0]], [1.0]), (model[4], [[1.0]], [0.0])):
            layer.weight.copy_(torch.tensor(w)), layer.bias.copy_(torch.tensor(b))
    model[2].bias.requires_grad_(False)
    model[4].requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.25)
    with observer(root) as obs:
        obs.watch(model, opt)
        loss = model(torch.tensor([[1.0, 1.0]])).sum()  # 2 * (3 + 4 + 12) + 1 = 39
        loss.backward()  # grads: layer 0 (2, 2 | 2), layer 2 (19 | frozen)
        opt.step()
        obs.step(loss=loss)
    rows = trainatlas.open_catalog(root).execute(
        "SELECT position, grad_norm, weight_norm, update_ratio, act_mean, act_std FROM layers ORDER BY position"
    ).fetchall()
    expected = [
        (0, math.sqrt(12), math.sqrt(2.5**2 + 3.5**2 + 11.5**2), 0.25 * math.sqrt(12) / 13, 19.0, 0.0),
        (1, None, None, None, 19.0, 0.0),  # no parameters
        (2, 19.0, math.sqrt(2.75**2 + 1), 0.25 * 19 / math.sqrt(5), 39.0, 0.0),  # w 2 - 0.25 * 19
        (3, None, None, None, 39.0, 0.0),
        (4, None, 1.0, 0.0, 39.0, 0.0),  # frozen
    ]
    assert_rows(rows, expected)


def test_weights_too_large_to_copy_have_no_update_ratio(root, monkeypatch):
    from trainatlas.observer import layers

    monkeypatch.setattr(layers, "SNAPSHOT_LIMIT_BYTES", 0)
    with observer(root, sample_every=5) as obs:
        train(obs, steps=5)
    con = trainatlas.open_catalog(root)
    rows = con.execute("SELECT count(*), count(update_ratio), count(weight_norm) FROM layers WHERE step = 5").fetchone()
    assert rows == (5, 0, 3)  # 3 Linear layers: weight norms, but no update ratio


def test_activation_shares_hand_computed_and_only_the_first_forward_counts(root):
    """Zero, dead and saturated shares of conv maps (a unit is a channel) and of features."""
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))  # the identity
    model = nn.Sequential(conv, nn.Flatten(), nn.Hardtanh())
    x = torch.tensor([[[[0.0, 1.0]], [[0.0, 0.0]]], [[[0.0, 2.0]], [[0.0, 0.0]]]])  # channel 1 is all 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with observer(root) as obs:
        obs.watch(model, opt)
        model(x).sum().backward()
        model(torch.randn(2, 2, 1, 2)).sum().backward()  # gradient accumulation: not measured
        opt.step()
        obs.step()
    rows = trainatlas.open_catalog(root).execute(
        "SELECT act_mean, act_std, act_zero_frac, act_dead_frac, act_sat_frac FROM layers ORDER BY position"
    ).fetchall()
    values = [0, 1, 0, 0, 0, 2, 0, 0]
    clipped = [min(v, 1) for v in values]
    assert_rows(rows, [
        (3 / 8, statistics.stdev(values), 6 / 8, 1 / 2, None),  # channel 1 is dead
        (3 / 8, statistics.stdev(values), 6 / 8, 3 / 4, None),  # features 0, 2 and 3 are dead
        (2 / 8, statistics.stdev(clipped), 6 / 8, 3 / 4, 2 / 8),  # only Hardtanh saturates
    ])  # fmt: skip


def test_dead_relu_and_saturated_tanh_are_measured(root):
    with observer(root, name="dead", sample_every=10) as dead:
        train(dead, model=mlp(bias=-20.0), steps=10)
    with observer(root, name="tanh", sample_every=10) as sat:
        model = mlp(act=nn.Tanh)
        with torch.no_grad():
            model[0].weight.mul_(50)
        train(sat, model=model, steps=10)
    con = trainatlas.open_catalog(root)
    dead_frac = con.execute(
        "SELECT min(act_dead_frac), min(act_zero_frac) FROM layers WHERE run_id = ? AND module_type = 'ReLU'",
        [dead.run_id],
    ).fetchone()
    assert dead_frac == (1.0, 1.0)
    saturated = con.execute(
        "SELECT act_sat_frac FROM layers WHERE run_id = ? AND layer = '1' AND step = 10", [sat.run_id]
    ).fetchone()[0]
    assert saturated > 0.8
    healthy = con.execute(
        "SELECT max(act_sat_frac) FROM layers WHERE run_id = ? AND module_type = 'Linear'", [sat.run_id]
    ).fetchone()[0]
    assert healthy is None or math.isnan(healthy)  # only saturating activations are measured


def test_modules_left_in_eval_mode_are_recorded(root):
    model = mlp()
    model.eval()
    with observer(root, sample_every=5) as obs:
        train(obs, model=model, steps=5)
    con = trainatlas.open_catalog(root)
    assert con.execute("SELECT bool_or(training) FROM layers WHERE step = 5").fetchone()[0] is False


def test_nonfinite_loss_is_flagged_without_syncing(root):
    with observer(root) as obs:
        for step in range(10):
            obs.step(loss=torch.tensor(float("nan") if step >= 6 else 1.0))
    flags = scalar_series(root, obs.run_id, "flag/nonfinite_loss")
    assert [s for s, _ in flags] == [7, 8, 9, 10]
    con = trainatlas.open_catalog(root)
    events = con.execute("SELECT step, code, severity FROM events WHERE kind = 'alert'").fetchall()
    assert events == [(7, "nonfinite_loss", "critical")]


def test_no_item_call_per_step_when_the_loss_is_a_tensor(root, monkeypatch):
    calls = {"item": 0, "float": 0, "tolist": 0, "cpu": 0}
    import threading

    main = threading.get_ident()
    for name, attr in (("item", "item"), ("float", "__float__"), ("tolist", "tolist"), ("cpu", "cpu")):
        original = getattr(torch.Tensor, attr)

        def counting(self, *a, _orig=original, _name=name, **k):
            if threading.get_ident() == main:
                calls[_name] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, attr, counting)
    obs = observer(root, sample_every=0, flush_every_s=60)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    obs.watch(model, opt)
    x, y = data()
    for _ in range(100):
        loss = nn.functional.cross_entropy(model(x[:32]), y[:32])
        opt.zero_grad()
        loss.backward()
        opt.step()
        obs.step(loss=loss, batch_size=32)
    assert calls == {"item": 0, "float": 0, "tolist": 0, "cpu": 0}
    monkeypatch.undo()
    obs.close()
    assert len(scalar_series(root, obs.run_id, "train/loss")) == 100


def test_run_json_describes_the_run(root):
    model = mlp()
    with observer(root, name="described", config={"lr": 0.05, "batch": 32}) as obs:
        train(obs, model=model, steps=5)
    info = json.loads((obs.dir / "run.json").read_text())
    assert info["status"] == "completed" and info["steps"] == 5 and info["total_steps"] == 5
    assert info["config"] == {"lr": 0.05, "batch": 32}
    assert info["environment"]["torch"] == torch.__version__
    assert info["environment"]["python"]
    assert info["model"]["params"] == sum(p.numel() for p in model.parameters())
    assert [m["type"] for m in info["model"]["modules"]][:3] == ["Sequential", "Linear", "ReLU"]
    assert info["optimizer"]["type"] == "SGD" and info["optimizer"]["param_groups"][0]["lr"] == 0.05
    assert info["started_at"] <= info["heartbeat_at"] and info["ended_at"]


def test_exception_inside_with_marks_the_run_failed_with_traceback(root):
    with pytest.raises(ZeroDivisionError), observer(root, name="boom") as obs:
        train(obs, steps=5)
        1 / 0  # noqa: B018
    con = trainatlas.open_catalog(root)
    assert con.execute("SELECT status, steps FROM runs").fetchone() == ("failed", 5)
    info = json.loads((obs.dir / "run.json").read_text())
    assert "ZeroDivisionError" in info["traceback"]
    assert len(scalar_series(root, obs.run_id, "train/loss")) == 5


def test_close_failed_is_explicit(root):
    obs = observer(root)
    obs.step(loss=1.0)
    obs.close(status="failed", error="out of patience")
    assert json.loads((obs.dir / "run.json").read_text())["traceback"] == "out of patience"


def test_unwritable_root_warns_and_training_completes(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.warns(RuntimeWarning, match="not recorded"):
        obs = observer(blocker / "runs")
    with obs:
        losses = train(obs, steps=20)
    assert len(losses) == 20 and losses[-1] < losses[0]


def test_internal_failure_warns_once_switches_the_channel_off_and_training_goes_on(root, monkeypatch):
    from trainatlas.observer import layers

    def broken(self):
        raise RuntimeError("simulated bug in layer stats")

    monkeypatch.setattr(layers.LayerSampler, "collect", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with observer(root, sample_every=2) as obs:
            losses = train(obs, steps=20)
    ours = [w for w in caught if "layers" in str(w.message)]
    assert len(ours) == 1 and "switched off" in str(ours[0].message)
    assert len(losses) == 20
    assert len(scalar_series(root, obs.run_id, "train/loss")) == 20  # the other channels go on
    info = json.loads((obs.dir / "run.json").read_text())
    assert "simulated bug" in info["channels_off"]["layers"]


def test_writer_failure_does_not_stop_training(root, monkeypatch):
    from trainatlas.store.shards import ShardWriter

    def disk_full(self, table):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ShardWriter, "write", disk_full)
    with pytest.warns(RuntimeWarning, match="writer"), observer(root, flush_every_s=0.05) as obs:
        losses = train(obs, steps=30, before_step=lambda s: time.sleep(0.005))
    assert len(losses) == 30
    assert not obs._rec.steps  # nothing piles up in memory once writing is off
    assert not list(obs.dir.rglob("*.tmp-*"))  # no half-written shard is left behind


def test_a_backlog_is_written_as_one_shard_converted_a_chunk_at_a_time(root, monkeypatch):
    from trainatlas.observer import recording

    monkeypatch.setattr(recording, "DRAIN_CHUNK", 100)
    obs = observer(root, flush_every_s=3600)  # nothing is written before close
    for i in range(1, 1001):
        obs.step(loss=float(i))
        obs.log({"val/a": i * 2.0, "val/b": None, "val/c": "text"})
    obs.close()
    (shard,) = (obs.dir / "scalars").glob("*.parquet")
    f = pq.ParquetFile(shard)
    assert f.num_row_groups >= 10  # 1,000 steps and log calls, 100 at a time
    con = trainatlas.open_catalog(root)
    got = con.execute("SELECT key, count(*), sum(value) FROM scalars WHERE key IN ('train/loss', 'val/a', "
                      "'val/b', 'val/c') GROUP BY key ORDER BY key").fetchall()  # fmt: skip
    assert got == [("train/loss", 1000, 500500.0), ("val/a", 1000, 1001000.0)]


def test_flushes_in_the_background_while_training(root):
    obs = observer(root, flush_every_s=0.1)
    train(obs, steps=10)
    time.sleep(0.5)
    assert len(scalar_series(root, obs.run_id, "train/loss")) == 10  # readable before close
    assert trainatlas.open_catalog(root).execute("SELECT status FROM runs").fetchone() == ("running",)
    obs.close()


def test_shards_are_compacted_at_close(root):
    with observer(root, flush_every_s=0.02) as obs:
        train(obs, steps=60, before_step=lambda s: time.sleep(0.005))
        assert len(list((obs.dir / "scalars").glob("*.parquet"))) > 3
    files = list((obs.dir / "scalars").glob("*.parquet"))
    assert len(files) == 1
    assert pq.read_table(files[0]).num_rows == len(
        trainatlas.open_catalog(root).execute("SELECT * FROM scalars").fetchall()
    )
    assert len(scalar_series(root, obs.run_id, "train/loss")) == 60


def test_system_metrics_are_sampled(root):
    with observer(root, system=True, flush_every_s=0.1) as obs:
        train(obs, steps=40, before_step=lambda s: time.sleep(0.01))
    rss = scalar_series(root, obs.run_id, "mem/rss_bytes")
    assert len(rss) >= 2 and all(v > 10e6 for _, v in rss)
    assert scalar_series(root, obs.run_id, "cpu/process_percent")


def test_a_busy_data_loader_worker_is_the_runs_own_work_not_other_load():
    """DataLoader workers are children of the training process: their CPU is the run's, so it is
    not counted in cpu/others_percent (which would call the run contended)."""
    import subprocess
    import sys

    from trainatlas.observer.system import SystemSampler

    sampler = SystemSampler()
    worker = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        sampler.sample()  # the worker's first reading starts its window
        time.sleep(1.0)
        assert sampler._children_percent() >= 30  # one busy core, whatever else the machine runs
    finally:
        worker.kill()
        worker.wait()
    assert sampler._children_percent() == 0 and not sampler._children


def test_energy_and_carbon_from_codecarbon_offline(root, monkeypatch):
    pytest.importorskip("codecarbon")
    monkeypatch.setenv("TRAINATLAS_CARBON_COUNTRY", "FRA")
    with observer(root, carbon=True) as obs:
        train(obs, steps=30)
    kwh = scalar_series(root, obs.run_id, "energy/kwh")
    kg = scalar_series(root, obs.run_id, "carbon/kg")
    assert kwh and kg and kwh[-1][1] > 0 and kg[-1][1] > 0
    assert 0.01 < kg[-1][1] / kwh[-1][1] < 0.2  # France's grid: tens of g CO2 per kWh
    assert scalar_series(root, obs.run_id, "power/cpu_w")
    assert json.loads((obs.dir / "run.json").read_text())["carbon"]["country"] == "FRA"


def test_root_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINATLAS_ROOT", str(tmp_path / "from-env"))
    with trainatlas.Observer(project="p", carbon=False, system=False) as obs:
        obs.step(loss=1.0)
    assert obs.dir.parent.parent == tmp_path / "from-env"
    assert trainatlas.open_catalog().execute("SELECT count(*) FROM runs").fetchone() == (1,)


def test_long_runs_compact_while_running(root, monkeypatch):
    from trainatlas.observer import observer as observer_module
    from trainatlas.store.shards import list_shards

    monkeypatch.setattr(observer_module, "ROLLING_COMPACT_AT", 4)
    counts = []
    with observer(root, flush_every_s=0.01) as obs:

        def count_shards(step: int) -> None:
            time.sleep(0.003)
            counts.append(len(list_shards(obs.dir / "scalars")))  # files being merged away excluded

        train(obs, steps=150, before_step=count_shards)
    assert 2 <= max(counts) <= 4 and len(scalar_series(root, obs.run_id, "train/loss")) == 150


def test_values_that_are_not_numbers_are_dropped_not_stored_as_nan(root):
    with observer(root) as obs:
        obs.step(loss=1.0)
        obs.log({"val/acc": 0.5, "note": "not a number", "val/loss": float("nan")})
    con = trainatlas.open_catalog(root)
    rows = con.execute("SELECT key, value FROM scalars WHERE key IN ('val/acc', 'note', 'val/loss')").fetchall()
    assert sorted(rows, key=str)[0] == ("val/acc", 0.5) and len(rows) == 2
    assert math.isnan(dict(rows)["val/loss"])  # a real NaN is data, and kept


def test_memory_stays_bounded_when_steps_outpace_the_writer(root, monkeypatch):
    from trainatlas.observer import observer as observer_module

    monkeypatch.setattr(observer_module, "MAX_PENDING_STEPS", 100)
    obs = observer(root, flush_every_s=3600)  # the writer sleeps: nothing drains the buffer
    for step in range(5000):
        obs.step(loss=1.0 / (step + 1))
    assert len(obs._rec.steps) < 2000  # thinned out (1 in 2, 4, 8, ...) instead of growing to 5000
    obs.close()
    con = trainatlas.open_catalog(root)
    kept = con.execute("SELECT count(*), max(step) FROM scalars WHERE key = 'train/loss'").fetchone()
    assert 100 < kept[0] < 2000
    assert con.execute("SELECT code FROM events WHERE kind = 'observer'").fetchall() == [("recording_thinned",)]


def test_recording_does_not_import_pandas_or_arrow_compute(tmp_path):
    """pyarrow imports pandas (~50 MB) on its first conversion of Python objects, and
    ``pyarrow.compute`` costs 10 MB more; the Observer builds its columns from buffers instead.
    Run apart: the test process may have both already."""
    import subprocess
    import sys

    script = (
        "import sys, trainatlas\n"
        f"obs = trainatlas.Observer(root={str(tmp_path)!r}, carbon=False, flush_every_s=0.01)\n"
        "for i in range(300):\n"
        "    obs.step(loss=1.0); obs.log({'a': i, 'b': None, 'c': 'text'})\n"
        "obs.close()\n"
        "print('pandas' in sys.modules, 'pyarrow.compute' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_shards_have_the_contract_schema(root):
    """Run ids and keys are written dictionary-encoded, yet read back as the plain columns of the
    contract (store/schema.py), by pyarrow and by DuckDB alike."""
    from trainatlas.store.schema import COLUMNS, arrow_schema

    with observer(root, sample_every=2) as obs:
        train(obs, steps=4)
        obs.log({"val/loss": 1.0})
    con = trainatlas.open_catalog(root)
    for table in ("scalars", "layers", "events"):
        (shard,) = (obs.dir / table).glob("*.parquet")
        assert pq.read_schema(shard) == arrow_schema(table)
        described = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{shard}', hive_partitioning = false)").fetchall()
        assert [(name, kind) for name, kind, *_ in described] == list(COLUMNS[table])


def test_logged_values_become_floats_column_by_column():
    import numpy as np

    from trainatlas.observer.values import float_array

    t = torch.tensor
    values, present = float_array([t(1.5), None, t(2.0)])  # a loss or grad-norm column: one stack
    assert present.tolist() == [True, False, True] and values[present].tolist() == [1.5, 2.0]
    # shapes, types and numbers that do not stack or do not fit: value by value, NULL where not a number
    values, present = float_array([t(1.0), t([2.0, 4.0]), "x", 2**2000, True, np.float32(0.5)])
    assert present.tolist() == [True, True, False, False, True, True]
    assert values[present].tolist() == [1.0, 3.0, 1.0, 0.5]
    values, present = float_array([None, None])
    assert len(values) == 2 and not present.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complex value is not a number to plot, and no reason to warn
        values, present = float_array([t(1 + 2j), t(2.0)])
    assert present.tolist() == [False, True] and values[1] == 2.0


def test_global_gradient_norms_are_combined_from_per_parameter_norms():
    from trainatlas.observer.values import norm_column

    t = torch.tensor
    column = [[t(3.0), t(4.0, dtype=torch.float64)], None, [t(float("inf")), t(1.0)], [t(float("nan"))], [t(2.0)]]
    norms, present = norm_column(column)
    assert present.tolist() == [True, False, True, True, True]
    assert norms[0] == 5.0 and math.isinf(norms[2]) and math.isnan(norms[3]) and norms[4] == 2.0
    assert norm_column([None, None])[1].tolist() == [False, False]


def test_flushes_from_several_threads_lose_nothing(root):
    """A flush from another thread (a test, a signal handler) while the background thread flushes:
    both would pick the same shard number; one waits for the other."""
    import threading

    obs = observer(root, flush_every_s=0.001)
    flushers = [threading.Thread(target=lambda: [obs._flush() for _ in range(100)]) for _ in range(2)]
    for thread in flushers:
        thread.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the writer channel must not switch itself off
        for step in range(2000):
            obs.step(loss=float(step))
            obs.log({f"metric/{j}": step * 1.0 for j in range(20)})
            if step % 20 == 0:
                time.sleep(0.001)
        for thread in flushers:
            thread.join()
        obs.close()
    assert len(scalar_series(root, obs.run_id, "train/loss")) == 2000
