"""How numbers and durations read in the terminal and in alerts: one place, so they read the same."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def number(value: float | None) -> str:
    """Four significant digits, ``-`` for a missing value."""
    return "-" if value is None else f"{value:.4g}"
