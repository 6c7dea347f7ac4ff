"""Process and accelerator metrics, sampled about once a second from the background thread."""

from __future__ import annotations

import sys
from typing import Any

import psutil


class SystemSampler:
    """RSS and CPU of this process; CUDA memory when torch uses CUDA; GPU load and power via NVML."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only starts the measurement window
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
        values: dict[str, float] = {
            "mem/rss_bytes": float(self.process.memory_info().rss),
            "mem/system_used_frac": 1.0 - memory.available / memory.total,
            "cpu/process_percent": float(self.process.cpu_percent(None)),
        }
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
