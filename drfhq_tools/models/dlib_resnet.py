"""dlib's face descriptor network (`dlib_face_recognition_resnet_model_v1.dat`) in PyTorch.

The architecture is dlib's `anet_type` (dnn_face_recognition_ex.cpp): a 7x7/2 stem with 32 filters
and a 3x3/2 max pool, residual levels of 3x32, 4x64, 3x128, 3x256 and 1x256 blocks (two 3x3
convolutions, each followed by an affine layer with batch norm folded in), a global average and a
256 -> 128 fully connected layer without bias. dlib's quirks are kept: strided convolutions and pools
have no padding, downsampling shortcuts are 2x2 average pools, and a residual addition zero-pads the
smaller tensor (channels and spatial size, from the top-left) to the larger one.

The parameter tensors are read from dlib's own serialization: each is a version number (2), four
variable-length integers (num_samples, k, nr, nc) and raw little-endian float32. They are located in
file order (input side first) by their exact expected shapes; a file that does not hold this network
fails with the first tensor it could not find.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DrfhqError

DLIB_MEANS = (122.782, 117.001, 104.298)
# (filters, first block downsamples?, blocks) from the input side
LEVELS = ((32, False, 3), (64, True, 4), (128, True, 3), (256, True, 3), (256, True, 1))


def _unpack_int(buf: bytes, pos: int) -> tuple[int, int] | None:
    head = buf[pos]
    count = head & 0x0F
    if count > 8 or head & 0x70:
        return None
    value = int.from_bytes(buf[pos + 1:pos + 1 + count], "little")
    return (-value if head & 0x80 else value), pos + 1 + count


def _tensor_at(buf: bytes, pos: int, dims: tuple[int, int, int, int]) -> tuple[np.ndarray, int] | None:
    head = _unpack_int(buf, pos)
    if head is None or head[0] != 2:
        return None
    p, found = head[1], []
    for _ in range(4):
        item = _unpack_int(buf, p)
        if item is None:
            return None
        found.append(item[0])
        p = item[1]
    if tuple(found) != dims:
        return None
    n = int(np.prod(dims))
    if p + 4 * n > len(buf):
        return None
    return np.frombuffer(buf, dtype="<f4", count=n, offset=p).astype(np.float32), p + 4 * n


def expected_tensors() -> list[tuple[str, tuple[int, int, int, int]]]:
    """(name, dlib dims) of every parameter tensor in file order."""
    shapes = [("stem.conv", (32 * 3 * 7 * 7 + 32, 1, 1, 1)), ("stem.affine", (64, 1, 1, 1))]
    channels = 32
    for level, (filters, down, blocks) in enumerate(LEVELS):
        for b in range(blocks):
            c_in = channels if b == 0 else filters
            shapes += [(f"l{level}.b{b}.conv1", (filters * c_in * 9 + filters, 1, 1, 1)), (f"l{level}.b{b}.affine1", (2 * filters, 1, 1, 1)),
                       (f"l{level}.b{b}.conv2", (filters * filters * 9 + filters, 1, 1, 1)), (f"l{level}.b{b}.affine2", (2 * filters, 1, 1, 1))]
        channels = filters
    shapes.append(("fc", (256, 128, 1, 1)))
    return shapes


def read_dlib_resnet(path) -> dict[str, np.ndarray]:
    buf = open(path, "rb").read()
    tensors, pos = {}, 0
    for name, dims in expected_tensors():
        while pos < len(buf):
            hit = _tensor_at(buf, pos, dims)
            if hit is not None:
                tensors[name], pos = hit
                break
            pos += 1
        else:
            raise DrfhqError(f"{path}: no tensor of shape {dims} for {name}: not dlib's face recognition ResNet v1")
    return tensors


def _pad_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the smaller tensor is zero-padded (channels, rows, columns) from the top-left."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape, b.shape)]
    out = a.new_zeros(shape)
    out[:, :a.shape[1], :a.shape[2], :a.shape[3]] += a
    out[:, :b.shape[1], :b.shape[2], :b.shape[3]] += b
    return out


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=0 if stride > 1 else 1)
        self.scale1, self.shift1 = nn.Parameter(torch.ones(c_out)), nn.Parameter(torch.zeros(c_out))
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1)
        self.scale2, self.shift2 = nn.Parameter(torch.ones(c_out)), nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv1(x) * self.scale1[:, None, None] + self.shift1[:, None, None])
        y = self.conv2(y) * self.scale2[:, None, None] + self.shift2[:, None, None]
        shortcut = F.avg_pool2d(x, 2, 2) if self.stride > 1 else x
        return F.relu(_pad_add(y, shortcut))


class DlibFaceResNet(nn.Module):
    """150x150 RGB chips (float, 0..255, N x 3 x 150 x 150) -> N x 128 descriptors, differentiable."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, 2, padding=0)
        self.stem_scale, self.stem_shift = nn.Parameter(torch.ones(32)), nn.Parameter(torch.zeros(32))
        blocks, channels = [], 32
        for filters, down, count in LEVELS:
            for b in range(count):
                blocks.append(_Block(channels if b == 0 else filters, filters, 2 if (down and b == 0) else 1))
            channels = filters
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("means", torch.tensor(DLIB_MEANS).view(1, 3, 1, 1))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips - self.means) / 256.0
        x = F.relu(self.stem(x) * self.stem_scale[:, None, None] + self.stem_shift[:, None, None])
        x = F.max_pool2d(x, 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_dlib_file(cls, path) -> "DlibFaceResNet":
        tensors = read_dlib_resnet(path)
        net = cls()

        def conv(module: nn.Conv2d, flat: np.ndarray) -> None:
            w = module.weight
            n = w.numel()
            w.data.copy_(torch.from_numpy(flat[:n]).view_as(w))
            module.bias.data.copy_(torch.from_numpy(flat[n:]))

        def affine(scale: nn.Parameter, shift: nn.Parameter, flat: np.ndarray) -> None:
            k = scale.numel()
            scale.data.copy_(torch.from_numpy(flat[:k]))
            shift.data.copy_(torch.from_numpy(flat[k:]))

        conv(net.stem, tensors["stem.conv"])
        affine(net.stem_scale, net.stem_shift, tensors["stem.affine"])
        k = 0
        for level, (_, _, count) in enumerate(LEVELS):
            for b in range(count):
                block = net.blocks[k]
                conv(block.conv1, tensors[f"l{level}.b{b}.conv1"])
                affine(block.scale1, block.shift1, tensors[f"l{level}.b{b}.affine1"])
                conv(block.conv2, tensors[f"l{level}.b{b}.conv2"])
                affine(block.scale2, block.shift2, tensors[f"l{level}.b{b}.affine2"])
                k += 1
        net.fc.weight.data.copy_(torch.from_numpy(tensors["fc"].reshape(256, 128).T.copy()))
        return net.eval()
