"""The sRGB transfer curve (IEC 61966-2-1), shared by inversion's exposure (torch) and bench's colour metrics
(numpy). Written with masks and arithmetic only, so the same function takes a numpy array or a torch tensor."""

from __future__ import annotations

_SRGB_KNEE, _LINEAR_KNEE = 0.04045, 0.0031308


def srgb_to_linear(x):
    """sRGB on [0, 1] -> linear light on [0, 1]; a numpy array or a torch tensor, returned as the same kind."""
    low = x <= _SRGB_KNEE
    return low * (x / 12.92) + ~low * (((x * ~low + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    """Linear light on [0, 1] -> sRGB on [0, 1]; a numpy array or a torch tensor, returned as the same kind."""
    low = x <= _LINEAR_KNEE
    return low * (12.92 * x) + ~low * (1.055 * (x * ~low + _LINEAR_KNEE * low) ** (1 / 2.4) - 0.055)
