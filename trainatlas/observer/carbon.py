"""Energy and carbon through CodeCarbon's offline tracker (the ``carbon`` extra): no network, ever."""

from __future__ import annotations

import logging
import os

DEFAULT_COUNTRY = "USA"
COUNTRY_ENV = "TRAINATLAS_CARBON_COUNTRY"


def carbon_available() -> bool:
    try:
        import codecarbon  # noqa: F401
    except ImportError:
        return False
    return True


class CarbonMeter:
    """Cumulative energy (kWh), CO2 (kg) and power by component (W) of this process."""

    def __init__(self, country: str | None = None, measure_every_s: float = 15.0) -> None:
        os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self.country = (country or os.environ.get(COUNTRY_ENV) or DEFAULT_COUNTRY).upper()
        self.tracker = OfflineEmissionsTracker(
            country_iso_code=self.country,
            measure_power_secs=measure_every_s,
            output_methods=[],
            log_level="error",
            allow_multiple_runs=True,
            tracking_mode="process",
        )
        if not hasattr(self.tracker, "_total_energy"):  # its __init__ swallows its own errors
            raise RuntimeError(f"codecarbon could not start (country {self.country!r}?)")
        self.tracker.start()

    def read(self) -> dict[str, float]:
        kg = self.tracker.flush()
        t = self.tracker
        return {
            "energy/kwh": float(t._total_energy.kWh),
            "carbon/kg": float(kg or 0.0),
            "power/cpu_w": float(t._cpu_power.W),
            "power/gpu_w": float(t._gpu_power.W),
            "power/ram_w": float(t._ram_power.W),
        }

    def stop(self) -> dict[str, float]:
        values = self.read()
        self.tracker.stop()
        return values
