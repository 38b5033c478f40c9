"""Age groups, set in one place: render balances on them, build-dataset labels manifests with them,
bench slices by them. Bins are lower edges in years; the last bin is open (70+)."""

from __future__ import annotations

import math

DEFAULT_AGE_BINS = (0, 3, 10, 20, 30, 40, 50, 60, 70)   # FairFace's groups: 0-2, 3-9, 10-19, ..., 70+


def age_group_label(years: float | None, bins: tuple[int, ...] = DEFAULT_AGE_BINS) -> str | None:
    if years is None or (isinstance(years, float) and math.isnan(years)):
        return None
    for i, lo in enumerate(bins):
        hi = bins[i + 1] if i + 1 < len(bins) else None
        if hi is None or years < hi:
            return f"{lo}+" if hi is None else f"{lo}-{hi - 1}"
    return None


def age_group_labels(bins: tuple[int, ...] = DEFAULT_AGE_BINS) -> list[str]:
    return [age_group_label(float(lo), bins) for lo in bins]


def age_bands_within(low: float, high: float, bins: tuple[int, ...] = DEFAULT_AGE_BINS) -> list[tuple[float, float, str]]:
    """(from, to, label) of every group that lies wholly inside [low, high): the ages a generator of
    adults can be balanced over so that the dataset's own groups come out balanced. The open last
    group is closed at `high`."""
    bands = []
    for i, lo in enumerate(bins):
        hi = bins[i + 1] if i + 1 < len(bins) else high
        if lo >= low and hi <= high and hi > lo:
            bands.append((float(lo), float(hi), age_group_label(float(lo), bins)))
    return bands


def validate_age_bins(bins: tuple[int, ...]) -> str | None:
    """The reason a bin list is unusable, or None."""
    values = list(bins)
    if not values or values[0] != 0 or any(b <= a for a, b in zip(values, values[1:])):
        return f"age bins {values}: increasing lower edges starting at 0"
    return None
