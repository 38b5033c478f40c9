"""Literal transcription of NVIDIA's reference resampling (stylegan2-ada-pytorch / stylegan3
torch_utils/ops: `upfirdn2d._upfirdn2d_ref`, `setup_filter`, and the generic fallback path of
`conv2d_resample`), used only to check our generator against the official numerics."""

import numpy as np
import torch


def setup_filter(taps=(1, 3, 3, 1)):
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f.ger(f)                      # 4 taps: not separable
    return f / f.sum()


def upfirdn2d_ref(x, f, up=1, down=1, padding=(0, 0, 0, 0), flip_filter=False, gain=1):
    batch_size, num_channels, in_height, in_width = x.shape
    padx0, padx1, pady0, pady1 = padding
    x = x.reshape([batch_size, num_channels, in_height, 1, in_width, 1])
    x = torch.nn.functional.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape([batch_size, num_channels, in_height * up, in_width * up])
    x = torch.nn.functional.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
    x = x[:, :, max(-pady0, 0):x.shape[2] - max(-pady1, 0), max(-padx0, 0):x.shape[3] - max(-padx1, 0)]
    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[np.newaxis, np.newaxis].repeat([num_channels, 1] + [1] * f.ndim)
    x = torch.nn.functional.conv2d(input=x, weight=f, groups=num_channels)
    return x[:, :, ::down, ::down]


def conv2d_resample_ref(x, w, f, up=1, padding=0, groups=1, flip_weight=True):
    """The generic path of conv2d_resample (what its fast paths are built to equal)."""
    kh, kw = w.shape[-2:]
    fw = fh = f.shape[-1]
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if up == 1:
        if not flip_weight:
            w = w.flip([2, 3])
        return torch.nn.functional.conv2d(x, w, padding=[py0, px0], groups=groups)
    x = upfirdn2d_ref(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2)
    if not flip_weight:
        w = w.flip([2, 3])
    return torch.nn.functional.conv2d(x, w, groups=groups)
