"""How trainatlas judges the public training logs of ../shared/real-logs: each file is ingested and
diagnosed, and a table shows its label from MANIFEST.md, the issues raised and whether it was flagged
(an issue at warning or critical). Goals (issue 10): at least 7 of the 8 runs gone wrong flagged, at
most 1 of the 19 healthy runs with a warning.

The labels below are the one place that says what each log is; tests/test_real_logs.py reads them.
Usage: python benchmarks/real_logs_score.py [--logs DIR] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trainatlas.ingest import ingest_file
from trainatlas.store.catalog import Catalog
from trainatlas.tools.report import diagnose

GONE_WRONG = "gone wrong"
HEALTHY = "healthy"
# Failures the log shows only in an evaluation metric named by convention (FID, an episode score),
# not in a loss or gradient: reported, not part of the goal.
METRIC_ONLY = "gone wrong (metric only)"
# Trials a hyper-parameter sweep stopped after a few epochs: the sweep has already judged them.
PRUNED = "pruned trial"
OTHER = "other"  # edge cases, interrupted or partial runs, traps for naive rules: no expectation

# File-name prefix -> (label, the MANIFEST's Notable column that gives it).
LABELS: dict[str, tuple[str, str]] = {
    # -- gone wrong: the loss or gradient curves show it -----------------------------------------------
    "detr-custom-attn-4ep-not-learning": (GONE_WRONG, "BROKEN RUN: AP ~1e-9 for all 4 epochs while test_loss RISES"),
    "unsloth-60step-gradnorm-nan-inf-spike": (GONE_WRONG, "PATHOLOGY: grad_norm NaN at step 5 and Infinity at 18"),
    "whisper-large-v2-ja-5000steps-overfit": (GONE_WRONG, "OVERFITTING: eval_loss rises at every eval 0.321 -> 0.420"),
    "ecg-diagnosis-loss-diverging-negative-70ep": (GONE_WRONG, "DIVERGENCE: loss grows without bound to -6.5e7"),
    "slm-pretrain-stuck-loss-plateau": (GONE_WRONG, "NO LEARNING: loss stuck at 7.5-7.7 (unigram level) for 11k steps"),
    "skin-lesion-vgg16-earlystopping-restarts": (GONE_WRONG, "OVERFITTING: val loss best 1.05 @ep20 rises to 1.28"),
    "cpt-large-adgen-gen-10ep-eval-min-ep6": (
        GONE_WRONG, "Onset of overfitting: eval_loss minimum at epoch 6 then creeps up while train loss keeps falling"),
    "car-cnn-100ep-train-val-gap": (
        GONE_WRONG, "Overfitting: val_loss best @ep42 then noisy/rising while train loss keeps falling"),
    # -- gone wrong, seen only in an evaluation metric --------------------------------------------------
    "studiogan-dcgan-cifar10-fid-degrades": (METRIC_ONLY, "INSTABILITY: FID best 49.0 @42k steps, 137 @200k"),
    "studiogan-icrgan-tinyimagenet-fid-collapse": (METRIC_ONLY, "COLLAPSE: FID best 21.9 @42k steps, 201.7 @100k"),
    "studiogan-wgangp-tinyimagenet-never-learns": (METRIC_ONLY, "NO LEARNING: FID stays ~305-315 for the whole run"),
    "iqn-cartpole-cr-separated-no-learning": (METRIC_ONLY, "NO LEARNING: average score stays ~22 (random policy)"),
    # -- pruned sweep trials ------------------------------------------------------------------------------
    "slm-sweep-high-lr-stuck-val-rising-stopped-ep4": (
        PRUNED, "FAILED: train loss flat ~7.4 while val_loss rises; stopped after 4 of 20 epochs (pruned)"),
    "tft-retail-forecast-optuna-trial19-pruned": (PRUNED, "PRUNED trial: stopped after 2 epochs as val_loss rose"),
    # -- healthy: the Notable column says so --------------------------------------------------------------
    "conditional-detr-swin-50ep": (HEALTHY, "Healthy; test AP 0.043 -> 0.427"),
    "studiogan-biggan-cifar10-healthy": (HEALTHY, "Healthy reference: FID 45 -> 8.0"),
    "tinyllama-sft-2ep": (HEALTHY, "Healthy; eval_loss 1.62 -> 1.12"),
    "whisper-tiny-norwegian-100k-steps": (HEALTHY, "Long healthy curve: 2000 train logs, 100 evals"),
    "mnist-cnn-5ep-with-test": (HEALTHY, "Healthy; sparse columns; final test row"),
    "slm-sweep-healthy-20ep": (HEALTHY, "Healthy but large generalisation gap (train 4.17 vs val 5.17)"),
    "slm-wikitext103-pretrain-10ep": (HEALTHY, "Healthy; val loss 4.13 -> 3.57"),
    "mmpretrain-resnet50-fruit30-10ep": (HEALTHY, "Healthy; MMEngine text format"),
    "rtmdet-ins-tiny-balloon-40ep": (HEALTHY, "Healthy; bbox and segm mAP blocks"),
    "cascade-rcnn-bridge-detection": (HEALTHY, "Healthy; val bbox_mAP rises monotonically 0.092 -> 0.546"),
    "mmcls-resnet18-cifar10-finetune-100ep": (HEALTHY, "Healthy; step lr decay 1e-3 -> 1e-4; top-1 98.7"),
    "mmseg-pspnet-voc2012-20k-iter": (HEALTHY, "Healthy; mIoU 0.602 -> 0.718"),
    "mmpretrain-resnet50-fruit30.": (HEALTHY, "Healthy; top-1 66 -> 86 (MMEngine scalars)"),
    "mmseg-pspnet-watermelon87-3000iter": (HEALTHY, "Healthy; mIoU 21 -> 58"),
    "rtmdet-tiny-drink-40ep": (HEALTHY, "Healthy; mAP 0.667 -> 0.942"),
    "rtmpose-s-ear-keypoints-300ep": (HEALTHY, "Healthy; coco/AP 0.0004 -> 0.733"),
    "emonet-tcn-python-logging-500ep": (HEALTHY, "Healthy; converges to ~0.001"),
    "yolov5-cell-detection-300ep": (HEALTHY, "Healthy long run"),
    "yolov8-fire-smoke-25ep.results": (HEALTHY, "Healthy; same run as the TensorBoard file"),
}  # fmt: skip
GOAL_FLAGGED = (7, 8)  # at least 7 of the 8 runs gone wrong flagged
GOAL_WARNED = (1, 19)  # at most 1 of the 19 healthy runs with a warning or critical


def label_of(path: Path) -> tuple[str, str]:
    """The log's label and its reason, from the longest matching prefix (``OTHER`` when none)."""
    hits = [p for p in LABELS if path.name.startswith(p)]
    return LABELS[max(hits, key=len)] if hits else (OTHER, "")


@dataclass
class Row:
    log: str
    label: str
    reason: str
    issues: list[tuple[str, str]]  # (code, severity)

    @property
    def flagged(self) -> bool:
        return any(severity in ("warning", "critical") for _, severity in self.issues)


def score(logs: Path, root: Path) -> list[Row]:
    """Ingest and diagnose every file under ``logs`` (one folder per format)."""
    rows = []
    for path in sorted(p for p in logs.glob("*/*") if p.is_file()):
        label, reason = label_of(path)
        run_id = ingest_file(path, root).run_id
        found = [] if not run_id else [(i.code, i.severity) for i in diagnose(Catalog(root), run_id).issues]
        rows.append(Row(path.name, label, reason, found))
    return rows


def totals(rows: list[Row]) -> dict[str, tuple[int, int]]:
    """label -> (flagged, runs)."""
    out: dict[str, tuple[int, int]] = {}
    for r in rows:
        flagged, n = out.get(r.label, (0, 0))
        out[r.label] = (flagged + r.flagged, n + 1)
    return out


def goals_met(rows: list[Row]) -> tuple[bool, bool]:
    t = totals(rows)
    flagged, wrong = t.get(GONE_WRONG, (0, 0))
    warned, healthy = t.get(HEALTHY, (0, 0))
    return flagged * GOAL_FLAGGED[1] >= GOAL_FLAGGED[0] * wrong, warned * GOAL_WARNED[1] <= GOAL_WARNED[0] * healthy


def _issues_text(issues: list[tuple[str, str]]) -> str:
    shown = [f"{code} ({severity})" for code, severity in issues]
    return ", ".join(shown) or "-"


def print_table(rows: list[Row]) -> None:
    order = (GONE_WRONG, HEALTHY, METRIC_ONLY, PRUNED, OTHER)
    print("| log | label | issues (severity) | flagged |\n|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (order.index(r.label), r.log)):
        print(f"| `{r.log}` | {r.label} | {_issues_text(r.issues)} | {'yes' if r.flagged else 'no'} |")
    t = totals(rows)
    print()
    for label in order:
        flagged, n = t.get(label, (0, 0))
        print(f"{label}: {flagged} of {n} flagged (warning or critical)")
    recall, quiet = goals_met(rows)
    print(f"goal: >= {GOAL_FLAGGED[0]} of {GOAL_FLAGGED[1]} gone wrong flagged: {'met' if recall else 'NOT met'}")
    print(f"goal: <= {GOAL_WARNED[0]} of {GOAL_WARNED[1]} healthy warned: {'met' if quiet else 'NOT met'}")


def main() -> int:
    default = Path(__file__).resolve().parents[2] / "shared" / "real-logs"
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--logs", type=Path, default=default if default.is_dir() else Path("/work/shared/real-logs"))
    p.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write the rows as JSON (stdout if no FILE)")
    a = p.parse_args()
    if not a.logs.is_dir():
        print(f"no real logs at {a.logs}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="trainatlas-real-logs-") as tmp:
        rows = score(a.logs, Path(tmp))
    if a.json:
        text = json.dumps([{**r.__dict__, "flagged": r.flagged} for r in rows], indent=1)
        print(text) if a.json == "-" else Path(a.json).write_text(text)
    else:
        print_table(rows)
    return 0 if all(goals_met(rows)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
