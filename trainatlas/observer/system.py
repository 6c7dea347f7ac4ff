"""Process and accelerator metrics, sampled about once a second from the background thread."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

import psutil


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]  # fmt: skip


def _heap_reader() -> Any:
    """glibc's ``mallinfo2`` (2.33+): bytes the program holds on the heap. RSS cannot show a leak
    whose memory comes from pages the allocator already had (freed earlier, or never given back);
    the bytes in use can. None where there is no glibc (macOS, musl, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    mallinfo2.argtypes = []
    return mallinfo2


class _RunQueueWait:
    """The share of this process's CPU demand that waited for a CPU (Linux schedstat: per thread,
    nanoseconds on a CPU and nanoseconds runnable but queued). A step that is slow because other
    work holds the CPUs shows here; one that sleeps or waits on I/O does not."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}
        self.share()

    def share(self) -> float | None:
        """Percent of the CPU time asked for since the last call that was spent queued."""
        now: dict[str, tuple[int, int]] = {}
        try:
            tids = os.listdir("/proc/self/task")
        except OSError:
            return None
        for tid in tids:
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    on_cpu, queued = (int(v) for v in f.read().split()[:2])
            except (OSError, ValueError):
                continue  # the thread ended meanwhile
            now[tid] = (on_cpu, queued)
        ran = waited = 0
        for tid, (on_cpu, queued) in now.items():
            before = self._last.get(tid, (0, 0))
            ran, waited = ran + on_cpu - before[0], waited + queued - before[1]
        self._last = now
        return 100.0 * waited / (ran + waited) if ran + waited > 0 else None


class SystemSampler:
    """RSS, heap in use and CPU of this process, how busy the machine is with other work; CUDA
    memory when torch uses CUDA; GPU load and power via NVML."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only starts the measurement window
        psutil.cpu_times_percent(None)
        self._cpus = psutil.cpu_count() or 1
        self._heap = _heap_reader()
        self._queue = _RunQueueWait()  # None readings where there is no /proc (macOS, Windows)
        self._children: dict[int, psutil.Process] = {}
        self._nvml: Any = None
        self._nvml_handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._nvml_handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001 - no NVIDIA driver, no NVML: nothing to sample
            self._nvml = None

    def sample(self) -> dict[str, float]:
        memory = psutil.virtual_memory()
        process_percent = float(self.process.cpu_percent(None))
        values: dict[str, float] = {
            "mem/rss_bytes": float(self.process.memory_info().rss),
            "mem/system_used_frac": 1.0 - memory.available / memory.total,
            "cpu/process_percent": process_percent,
        }
        if self._heap is not None:
            info = self._heap()
            values["mem/heap_bytes"] = float(info.uordblks + info.hblkhd)
        values.update(self._machine_load(process_percent))
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            values["mem/cuda_allocated_bytes"] = float(torch.cuda.memory_allocated())
            values["mem/cuda_reserved_bytes"] = float(torch.cuda.memory_reserved())
            values["mem/cuda_peak_bytes"] = float(torch.cuda.max_memory_allocated())
            values["mem/cuda_total_bytes"] = float(torch.cuda.get_device_properties(0).total_memory)
        for i, handle in enumerate(self._nvml_handles):
            util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            values[f"gpu/{i}/util_percent"] = float(util.gpu)
            values[f"gpu/{i}/power_w"] = self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        return values

    def _children_percent(self) -> float:
        """CPU percent of this process's children since the last sample (DataLoader workers: the
        training's own work, not other work on the machine). A child's first reading starts its window."""
        total = 0.0
        current: dict[int, psutil.Process] = {}
        for child in self.process.children(recursive=True):
            known = self._children.get(child.pid, child)
            try:
                reading = known.cpu_percent(None)
            except psutil.Error:  # it ended meanwhile
                continue
            total += reading if child.pid in self._children else 0.0
            current[child.pid] = known
        self._children = current
        return total

    def _machine_load(self, process_percent: float) -> dict[str, float]:
        """How much of the machine's CPU went to other processes (and, on a VM, to the hypervisor's
        steal) since the last sample, in percent of all CPUs: a slow step under such load is
        contention from outside the training, not a training bug."""
        times = psutil.cpu_times_percent(None)
        busy = 100.0 - times.idle - getattr(times, "iowait", 0.0)
        steal = float(getattr(times, "steal", 0.0))
        own = process_percent + self._children_percent()
        others = max(0.0, busy - steal - own / self._cpus)
        load = {"cpu/others_percent": others, "cpu/steal_percent": steal}
        waited = self._queue.share()
        if waited is not None:
            load["cpu/runqueue_wait_percent"] = waited
        return load
