"""Checks on the machine: data loading, memory, throughput, step time, stragglers."""

from __future__ import annotations

import re

import numpy as np

from trainatlas.fmt import change
from trainatlas.tools.diagnostics.base import Issue, check, fmt, need
from trainatlas.tools.robust import buckets, level, median, spearman, window
from trainatlas.tools.rundata import RunData, Series

# dataloader_bottleneck: waiting for data takes > 30% of the training time (warning), > 10% (info);
# the PyTorch profiler recommends action above 5%. The share is total wait over total step time, not
# a ratio of medians: with k loader workers the waits come in bursts (every k-th batch, each epoch's
# first), so the median step waits for nothing while most of the wall time is waiting (an RTMDet log
# rebuilt per iteration: median wait 3 ms, 58% of the time waiting), and MMCV/MMEngine log moving
# means over `window_size` iterations, whose sums keep the share but whose medians are no step's.
DATA_WARNING = 0.30
DATA_INFO = 0.10
# A run on a GPU shows CUDA memory: MMCV and MMEngine log `memory` (MB) only when CUDA is available,
# the Observer samples mem/cuda_* once the process uses CUDA.
GPU_KEYS = ("memory", "mem/cuda_allocated_bytes", "mem/cuda_peak_bytes")
# memory_leak: memory climbs steadily (rank correlation >= 0.9) by > 20% and > 100 MB after warm-up.
# Judged on the bytes in use (CUDA allocated, the host heap in use) before RSS: RSS stays flat while
# a leak fills pages the allocator already holds (freed by earlier work, or never returned).
LEAK_CORR = 0.9
LEAK_GROWTH = 0.2
LEAK_BYTES = 100e6
# Memory is sampled about once a second, so a leak of minutes has a few hundred samples but one of
# seconds only a handful. Below 10 samples the climb must be strict (every sample above the one
# before): 5 samples in increasing order happen by chance with probability 1/120, and the growth
# must be large anyway.
LEAK_MIN_SAMPLES = 5
LEAK_FEW_SAMPLES = 10
# A leak keeps its pace when something else is freed meanwhile (an evaluation's buffers, a garbage
# collection of an earlier model): one drop breaks a rank correlation but not the climb. So also a
# leak: memory up from one slice of the run to the next in >= 80% of them, and at their median pace
# over the whole run as large a growth as above.
LEAK_UP_SHARE = 0.8
# The pace is read over 20 slices of the run: within a step memory jitters by the step's temporaries
# (samples taken close together, as when the writer catches up, differ by that jitter alone).
LEAK_PACE_SLICES = 20
MEMORY_NAMES = {"mem/cuda_allocated_bytes": "CUDA memory allocated", "mem/heap_bytes": "Heap memory in use",
                "mem/rss_bytes": "Resident memory"}  # fmt: skip
# oom_risk: > 90% of device (or system) memory in use; critical above 97%.
OOM_WARNING = 0.90
OOM_CRITICAL = 0.97
# throughput_degradation: the last 20% of the run is < 70% as fast as the early middle.
THROUGHPUT_DROP = 0.7
# step_time_instability (SageMaker StepOutlier: mean + 3 sigma): share of steps > 3x the median.
OUTLIER_FACTOR = 3.0
OUTLIER_INFO = 0.02
OUTLIER_WARNING = 0.30
# ... or when the outliers' time above the median is a quarter of all step time, however few they
# are: a stall every fifth step that triples the run's length is the run's main cost.
OUTLIER_LOST_WARNING = 0.25
# Contention: slow steps while other work holds the CPUs are not a training bug. Judged on the share
# of this process's CPU demand spent queued for a CPU (cpu/runqueue_wait_percent; about 2% on a
# quiet machine, about 50% with a busy loop on every core) and on the CPU share other processes
# and the hypervisor took (under 5% on a quiet machine, 50% with one other busy process on two
# cores; DataLoader workers are the run's own). A run whose median is above 20% was contended: its
# step-time outliers are info. Throughput that fell while that share rose by 15 points, or while it
# stayed above 20%, is the machine's, not the run's.
CONTENDED = 20.0
CONTENTION_RISE = 15.0
# Timing checks need a run of some length: seconds of wall time say nothing about trends.
MIN_TIMED_SECONDS = 3.0
# rank_straggler: one rank's median step time > 1.2x the median over ranks.
STRAGGLER = 1.2


def _on_gpu(data: RunData) -> bool:
    """Whether the run shows it trained on a GPU: CUDA memory in use, which the Observer samples only
    once the process has initialized CUDA (a machine with a GPU may still train on its CPU)."""
    return any(data.has(k) for k in GPU_KEYS)


@check("dataloader_bottleneck", "system")
def dataloader_bottleneck(data: RunData) -> Issue | None:
    """A large share of the training time is spent waiting for the next batch."""
    wait, step = data.series("time/data_s").finite(), data.series("time/step_s").finite()
    need(len(wait) >= 20 and len(step) >= 20, "no data-wait timings (needs watch(model))")
    steps, i, j = np.intersect1d(wait.steps, step.steps, return_indices=True)
    need(len(steps) >= 20, "data-wait and step timings at too few common steps")
    waited, took = float(np.sum(wait.values[i])), float(np.sum(step.values[j]))
    share = waited / max(took, 1e-12)
    if share < DATA_INFO:
        return None
    gpu, mean_wait, mean_step = _on_gpu(data), waited / len(steps), took / len(steps)
    meanwhile = "the GPU idles meanwhile" if gpu else "the training loop waits for data that long, computing nothing"
    return Issue(
        code="dataloader_bottleneck",
        severity="warning" if share >= DATA_WARNING else "info",
        title="Data loading is a bottleneck",
        message=(
            f"Waiting for data takes {share:.0%} of the training time (on average {fmt(mean_wait)} s of each "
            f"{fmt(mean_step)} s step): {meanwhile}."
        ),
        evidence={"data_share": share, "mean_data_s": mean_wait, "mean_step_s": mean_step, "gpu": gpu},
        first_step=int(steps[0]),
        fix_prompt=(
            f"Use DataLoader(num_workers=4 or more{', pin_memory=True' if gpu else ''}, persistent_workers=True, "
            "prefetch_factor=4), move decoding/augmentation out of __getitem__ hot paths, or cache the "
            "preprocessed dataset."
        ),
    )


def _climb(data: RunData, key: str, min_bytes: float) -> tuple[float, float, str, int] | None:
    """(start, end, how it climbed in words, first step) of a steady climb, else None."""
    s = data.series(key).finite()
    if len(s) < LEAK_MIN_SAMPLES:
        return None
    if len(s) >= 10 * LEAK_MIN_SAMPLES:
        s = window(s, 0.1, 1.0)  # after warm-up (the allocator's first caches)
    elif len(s) > LEAK_MIN_SAMPLES:
        s = Series(s.steps[1:], s.values[1:])  # a short run: only the first sample
    b = buckets(s, 200)
    corr = spearman(b.steps, b.values)
    if len(b) < LEAK_FEW_SAMPLES and not np.all(np.diff(b.values) > 0):
        return None
    start, end = median(window(b, 0, 0.1).values), median(window(b, 0.9, 1).values)
    coarse = buckets(s, LEAK_PACE_SLICES)
    changes = np.diff(coarse.values)
    paced = float(np.median(changes)) * len(changes)  # the growth at the median pace
    up = changes > 0
    if len(coarse) >= LEAK_FEW_SAMPLES and np.mean(up) >= LEAK_UP_SHARE and start > 0 and \
            paced > LEAK_GROWTH * start and paced > min_bytes:  # fmt: skip
        how = f"up in {int(up.sum())} of {len(changes)} slices of the run"
        if (~up).any():
            how += f"; a drop of {-float(changes.min()) / 1e6:.0f} MB meanwhile, other memory freed, did not stop it"
        return float(coarse.values[0]), float(coarse.values[0]) + paced, how, int(coarse.steps[0])
    if corr >= LEAK_CORR and start > 0 and end / start - 1 > LEAK_GROWTH and end - start > min_bytes:
        return start, end, f"rank correlation with step {corr:.2f}", int(b.steps[0])
    return None


@check("memory_leak", "system")
def memory_leak(data: RunData) -> Issue | None:
    """Host or device memory keeps climbing step after step (tensors kept alive across steps)."""
    keys = [k for k in ("mem/cuda_allocated_bytes", "mem/heap_bytes", "mem/rss_bytes") if data.has(k)]
    need(bool(keys), "no memory samples (system channel off)")
    for key in keys:
        found = _climb(data, key, 50e6 if key == "mem/cuda_allocated_bytes" else LEAK_BYTES)
        if found:
            start, end, how, first = found
            s = data.series(key).finite()
            per_1k = (end - start) / max(int(s.steps[-1]) - first, 1) * 1000
            rate = f"{per_1k / 1e9:.1f} MB per step" if per_1k >= 1e8 else f"{per_1k / 1e6:.1f} MB per 1,000 steps"
            return Issue(
                code="memory_leak",
                severity="warning",
                title="Memory leak",
                message=(
                    f"{MEMORY_NAMES[key]} ({key}) climbs steadily, about {rate} ({how}): "
                    f"{(end - start) / 1e6:.0f} MB more over the run, from {start / 1e6:.0f} MB, and still climbing."
                ),
                evidence={"key": key, "start_bytes": start, "end_bytes": end, "bytes_per_1000_steps": per_1k},
                first_step=first,
                fix_prompt=(
                    "Do not keep tensors that hold the graph across steps: accumulate loss.item() or "
                    "loss.detach() instead of loss, and clear lists of outputs/activations each step."
                ),
            )
    return None


@check("oom_risk", "system")
def oom_risk(data: RunData) -> Issue | None:
    """Device or system memory close to full."""
    peak = data.series("mem/cuda_peak_bytes").finite()
    total = data.series("mem/cuda_total_bytes").finite()
    used = data.series("mem/system_used_frac").finite()
    need(len(used) > 0 or (len(peak) > 0 and len(total) > 0), "no memory samples")
    share, where = 0.0, ""
    if len(peak) and len(total):
        share, where = float(peak.values.max() / total.values.max()), "GPU"
    if len(used) and float(used.values.max()) > share:
        share, where = float(used.values.max()), "system"
    if share < OOM_WARNING:
        return None
    return Issue(
        code="oom_risk",
        severity="critical" if share >= OOM_CRITICAL else "warning",
        title="Out-of-memory risk",
        message=f"{where} memory peaked at {share:.0%} of its capacity; a longer sequence or batch will not fit.",
        evidence={"peak_share": share, "device": where},
        first_step=None,
        fix_prompt=(
            "Lower the batch size and use gradient accumulation, enable mixed precision (bf16) and activation "
            "checkpointing, or free cached tensors between steps."
        ),
    )


@check("throughput_degradation", "system")
def throughput_degradation(data: RunData) -> Issue | None:
    """Training got markedly slower over the run."""
    tp = data.series("throughput/samples_per_s").finite()
    if len(tp) < 50:
        st = data.series("time/step_s").finite()
        need(len(st) >= 50, "no throughput or step times")
        tp = Series(st.steps, 1.0 / np.maximum(st.values, 1e-12))
    _need_duration(data)
    b = buckets(tp, 200)
    fast, slow = window(b, 0.1, 0.4), window(b, 0.8, 1.0)
    early, late = median(fast.values), median(slow.values)
    if early <= 0 or late >= THROUGHPUT_DROP * early:
        return None
    was = _contention(data, float(fast.steps[0]), float(fast.steps[-1]), neighbours=True)
    now = _contention(data, float(slow.steps[0]), float(slow.steps[-1]), neighbours=True)
    before, during = (was[0] if was else None), (now[0] if now else None)
    # the machine's when the other work rose meanwhile, or held the CPUs all along (then every step
    # time is the scheduler's as much as the run's, and a trend in them says nothing)
    external = before is not None and during is not None and (
        during - before >= CONTENTION_RISE or min(before, during) >= CONTENDED
    )
    said = f"Throughput {change(early, late)}, from {fmt(early)} to {fmt(late)} per second"
    if was and now and external:
        said += (
            f", while other work took the machine's CPUs: in the slow part {now[1]}; before, {was[1]}. "
            "That is contention from outside the training, not a training bug."
        )
    return Issue(
        code="throughput_degradation",
        severity="info" if external else "warning",
        title="Throughput degraded",
        message=said if external else said + ".",
        evidence={"early": early, "late": late, "contention_before_percent": before,
                  "contention_during_percent": during},  # fmt: skip
        first_step=int(b.steps[int(0.8 * len(b))]),
        fix_prompt=(
            "Look for growing per-step work (lists or logs that grow, a memory leak forcing swaps), thermal or "
            "power throttling, or data files that get slower to read; profile a slow step with torch.profiler."
            + (" Here other processes competed for the CPUs: run on a quiet machine to measure." if external else "")
        ),
    )


@check("step_time_instability", "system")
def step_time_instability(data: RunData) -> Issue | None:
    """Many steps take far longer than the median (stalls, GC pauses, contention)."""
    st = data.series("time/step_s").finite()
    need(len(st) >= 100, "too few step times")
    _need_duration(data)
    med = level(st)
    share = float(np.mean(st.values > OUTLIER_FACTOR * med))
    if share < OUTLIER_INFO:
        return None
    load = _contention(data, float(st.steps[0]), float(st.steps[-1]), neighbours=False)
    contention = load[0] if load else None
    contended = load is not None and load[0] >= CONTENDED
    slow = st.values > OUTLIER_FACTOR * med
    lost = float(np.sum(st.values[slow] - med) / max(np.sum(st.values), 1e-12))
    costly = share >= OUTLIER_WARNING or lost >= OUTLIER_LOST_WARNING
    said = (
        f"{share:.1%} of steps took more than {OUTLIER_FACTOR:g}x the median step time ({fmt(med)} s), "
        f"{lost:.0%} of all step time lost to them"
    )
    if contended:
        said += (
            f", on a machine busy with other work ({load[1]}): contention from outside the training, "
            "not a training bug"
        )
    return Issue(
        code="step_time_instability",
        severity="warning" if costly and not contended else "info",
        title="Unstable step time",
        message=said + ".",
        evidence={"outlier_share": share, "lost_share": lost, "median_step_s": med,
                  "p99_step_s": float(np.quantile(st.values, 0.99)), "contention_percent": contention},  # fmt: skip
        first_step=int(st.steps[np.argmax(slow)]),
        fix_prompt=(
            "Check for periodic work inside the loop (checkpointing, evaluation, logging that syncs), other "
            "processes on the machine, and data-loader stalls; run torch.profiler around a slow step."
        ),
    )


def _contention(data: RunData, start: float, end: float, neighbours: bool) -> tuple[float, str] | None:
    """How much other work held the machine between two steps, in percent, and the readings in words:
    the median share of this process's CPU demand spent queued, and with ``neighbours`` the larger of
    that and the median share of all CPUs that other processes and the hypervisor took. A neighbour
    on the other hyper-thread of a core slows a whole run by a third without ever making it queue,
    but it cannot make single steps 3x slower: outliers need the queueing. (Without the queueing
    reading, the neighbours' share stands in.) None if neither was recorded."""
    queued = data.series("cpu/runqueue_wait_percent").finite()
    others, steal = data.series("cpu/others_percent").finite(), data.series("cpu/steal_percent").finite()
    if len(others) and len(steal) == len(others):
        others = Series(others.steps, others.values + steal.values)
    if len(queued) and not neighbours:
        others = Series(others.steps[:0], others.values[:0])
    found: list[tuple[float, str]] = []
    for share, words in ((queued, "this process waited for a CPU {:.0f}% of the time it asked for one"),
                         (others, "other processes took {:.0f}% of the CPUs")):  # fmt: skip
        inside = (share.steps >= start) & (share.steps <= end)
        if inside.any():
            value = median(share.values[inside])
            found.append((value, words.format(value)))
    return (max(v for v, _ in found), " and ".join(w for _, w in found)) if found else None


def _need_duration(data: RunData) -> None:
    st = data.series("time/step_s").finite()
    need(float(st.values.sum()) >= MIN_TIMED_SECONDS, f"the run is shorter than {MIN_TIMED_SECONDS:g} s")


@check("rank_straggler", "system")
def rank_straggler(data: RunData) -> Issue | None:
    """In distributed training one rank is consistently slower than the others."""
    pattern = re.compile(r"^rank/(\d+)/time/step_s$")
    ranks = {int(m.group(1)): k for k in data.keys if (m := pattern.match(k))}
    need(len(ranks) >= 2, "no per-rank step times (rank/<i>/time/step_s)")
    medians = {r: median(data.series(k).finite().values) for r, k in ranks.items()}
    overall = median(np.array(list(medians.values())))
    slow = {r: m for r, m in medians.items() if m > STRAGGLER * overall}
    if not slow:
        return None
    worst = max(slow, key=slow.get)
    return Issue(
        code="rank_straggler",
        severity="warning",
        title="Straggler rank",
        message=f"Rank {worst} takes {fmt(slow[worst])} s per step vs a median of {fmt(overall)} s over ranks.",
        evidence={"per_rank_step_s": medians},
        first_step=None,
        fix_prompt=f"Inspect the host of rank {worst} (thermal throttling, a slow disk, uneven data shards).",
    )
