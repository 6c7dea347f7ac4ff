"""How numbers and durations read in the terminal and in alerts: one place, so they read the same."""

from __future__ import annotations

import math


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



# A change of 10x or more reads as a factor ("grew 30×"), below that as a percentage ("rose 40%").
FACTOR_FROM = 10.0
LEVEL_BELOW = 0.0005  # a relative change under 0.05% rounds to 0.0%: it "stayed level"


def times(factor: float) -> str:
    """A factor as people write it: ``12×``, ``202×``, ``3.3e36×`` (no ``e+`` to decode)."""
    if factor < 1000:
        return f"{factor:.3g}×"
    mantissa, exponent = f"{factor:.2g}".split("e")
    return f"{mantissa}e{int(exponent)}×"


def change(before: float, after: float) -> str:
    """How a value moved, in words that keep their direction: ``rose 40%``, ``fell 12%``,
    ``grew 3.3e36×``, ``fell 200×``, ``stayed level``; never a signed percentage, whose minus a
    reader has to decode and which is unreadable for a blow-up (-290408717100392084598538935088447488.0 %)."""
    if not (math.isfinite(before) and math.isfinite(after)) or before == 0 or after == 0 or (before < 0) != (after < 0):
        return "stayed level" if before == after else f"went from {number(before)} to {number(after)}"
    ratio = after / before  # > 0: both have the same sign
    if abs(ratio - 1) < LEVEL_BELOW:
        return "stayed level"
    if before < 0:  # a negative value: words for its size, which is what grows or shrinks
        if ratio > 1:
            return f"became {times(ratio) if ratio >= FACTOR_FROM else f'{ratio - 1:.1%}'} more negative"
        return f"shrank {times(1 / ratio) if ratio <= 1 / FACTOR_FROM else f'{1 - ratio:.1%}'} towards zero"
    if ratio >= FACTOR_FROM:
        return f"grew {times(ratio)}"
    if ratio <= 1 / FACTOR_FROM:
        return f"fell {times(1 / ratio)}"
    return f"{'rose' if ratio > 1 else 'fell'} {abs(ratio - 1):.1%}"


def relative(rel: float) -> str:
    """A relative change already computed (``+0.4`` = 40% up, ``-0.12`` = 12% down) in ``change``'s words."""
    return change(1.0, 1.0 + rel) if rel > -1 else f"fell {abs(rel):.1%}"
