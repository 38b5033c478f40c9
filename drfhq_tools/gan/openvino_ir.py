"""Run an OpenVINO IR graph (version 10 XML + .bin) as a torch module.

A small interpreter, not a general converter: it covers the operations MobileStyleGAN's two networks
use (convolutions, grouped and transposed grouped convolutions, matrix products, element-wise maths,
the shape arithmetic around reshapes). Float constants become named parameters (their IR names, e.g.
`m.layers.6.to_img.conv.modulation.weight`), so they can be frozen, fine-tuned and swapped by name;
integer constants stay buffers. Every op is differentiable where torch's equivalent is.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DrfhqError

_DTYPES = {"f32": np.float32, "f16": np.float16, "i64": np.int64, "i32": np.int32, "u8": np.uint8, "i8": np.int8,
           "boolean": np.bool_, "u64": np.uint64}


def _ints(text: str | None) -> list[int]:
    return [int(v) for v in text.split(",")] if text else []


def _safe_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


class IRGraph(nn.Module):
    def __init__(self, xml_path: str | Path, bin_path: str | Path):
        super().__init__()
        root = ET.parse(xml_path).getroot()
        weights = np.fromfile(bin_path, dtype=np.uint8)
        self.layers: dict[int, dict] = {}
        self.param_names: dict[int, str] = {}
        self.input_names: list[str] = []
        for layer in root.find("layers"):
            lid = int(layer.get("id"))
            data = layer.find("data")
            info = {"type": layer.get("type"), "name": layer.get("name"), "data": dict(data.attrib) if data is not None else {}}
            out_port = layer.find("output/port")
            # static output shape as the IR records it (batch 1): used to place constants in the network
            info["out_dims"] = [int(d.text) for d in out_port.findall("dim")] if out_port is not None else []
            self.layers[lid] = info
            if info["type"] == "Const":
                d = info["data"]
                dtype = _DTYPES.get(d["element_type"])
                if dtype is None:
                    raise DrfhqError(f"{xml_path}: constant {info['name']} has unsupported type {d['element_type']}")
                offset, size = int(d["offset"]), int(d["size"])
                shape = _ints(d.get("shape")) if d.get("shape") else []
                array = np.frombuffer(weights[offset:offset + size].tobytes(), dtype=dtype).reshape(shape)
                tensor = torch.from_numpy(array.copy())
                key = f"c{lid}_{_safe_name(info['name'])}"[:200]
                if tensor.is_floating_point():
                    self.register_parameter(key, nn.Parameter(tensor.float(), requires_grad=False))
                else:
                    self.register_buffer(key, tensor.long() if dtype in (np.int32, np.int64, np.uint64) else tensor)
                self.param_names[lid] = key
            elif info["type"] == "Parameter":
                self.input_names.append(info["name"])
        self.inputs_of: dict[int, list[tuple[int, int, int]]] = defaultdict(list)   # to -> [(to_port, from, from_port)]
        for edge in root.find("edges"):
            self.inputs_of[int(edge.get("to-layer"))].append((int(edge.get("to-port")), int(edge.get("from-layer")), int(edge.get("from-port"))))
        for lid in self.inputs_of:
            self.inputs_of[lid].sort()
        self.order = self._topological_order()
        unknown = sorted({self.layers[i]["type"] for i in self.order} - set(_OPS) - {"Parameter", "Const", "Result"})
        if unknown:
            raise DrfhqError(f"{xml_path}: operations not supported by this interpreter: {', '.join(unknown)}")

    def _topological_order(self) -> list[int]:
        indegree = {lid: len(self.inputs_of.get(lid, [])) for lid in self.layers}
        consumers = defaultdict(list)
        for lid, ins in self.inputs_of.items():
            for _, src, _ in ins:
                consumers[src].append(lid)
        ready = sorted(l for l, d in indegree.items() if d == 0)
        order = []
        while ready:
            lid = ready.pop(0)
            order.append(lid)
            for c in consumers[lid]:
                indegree[c] -= 1
                if indegree[c] == 0:
                    ready.append(c)
        return order

    def constant(self, lid: int) -> torch.Tensor:
        return getattr(self, self.param_names[lid])

    def forward(self, inputs: dict[str, torch.Tensor], override=None) -> torch.Tensor:
        """inputs: Parameter name -> tensor. override(lid, info, args) may return a value for a layer."""
        values: dict[tuple[int, int], torch.Tensor] = {}
        result = None
        for lid in self.order:
            info = self.layers[lid]
            kind = info["type"]
            args = [values[(src, port)] for _, src, port in self.inputs_of.get(lid, [])]
            if kind == "Parameter":
                out = inputs[info["name"]]
            elif kind == "Const":
                out = self.constant(lid)
            elif kind == "Result":
                result = args[0]
                continue
            else:
                out = override(lid, info, args) if override else None
                if out is None:
                    out = _OPS[kind](info["data"], args)
            if isinstance(out, tuple):
                for port, value in enumerate(out, start=len(args)):
                    values[(lid, port)] = value
            else:
                values[(lid, len(args))] = out
        return result


def _conv(data, args, groups_from_weight=False, transposed=False):
    x, w = args[0], args[1]
    stride = _ints(data.get("strides"))
    dilation = _ints(data.get("dilations"))
    pads_begin, pads_end = _ints(data.get("pads_begin")), _ints(data.get("pads_end"))
    if data.get("auto_pad", "explicit") not in ("explicit", "notset"):
        raise DrfhqError(f"auto_pad={data['auto_pad']} is not supported")
    groups = 1
    if groups_from_weight:
        groups = w.shape[0]
        w = w.reshape(w.shape[0] * w.shape[1], *w.shape[2:])
    if transposed:
        if any(pads_begin) or any(pads_end):
            raise DrfhqError("padded transposed convolution is not supported")
        kh, kw = w.shape[-2:]
        if (groups == x.shape[1] and w.shape[0] == groups and not any(_ints(data.get("output_padding")))
                and w.shape[1] == 1 and [kh, kw] == stride and dilation == [1, 1]):
            # per-channel upsampling (the inverse Haar steps): each input pixel becomes a kh x kw tile, a
            # broadcast product that is several times faster than a grouped transposed convolution on the CPU
            n, c, h, wd = x.shape
            tile = w.reshape(1, c, 1, kh, 1, kw)
            return (x[:, :, :, None, :, None] * tile).reshape(n, c, h * kh, wd * kw)
        output_padding = _ints(data.get("output_padding")) or [0, 0]
        return F.conv_transpose2d(x, w, stride=stride, groups=groups, dilation=dilation, output_padding=output_padding)
    if pads_begin != pads_end:
        x = F.pad(x, (pads_begin[1], pads_end[1], pads_begin[0], pads_end[0]))
        pads_begin = [0, 0]
    return F.conv2d(x, w, stride=stride, padding=pads_begin, dilation=dilation, groups=groups)


def _reshape(data, args):
    x, shape = args
    target = [int(v) for v in shape.tolist()]
    if data.get("special_zero") == "true":
        target = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
    return x.reshape(target)


def _axes(t: torch.Tensor, rank: int) -> list[int]:
    return sorted(int(a) % rank for a in t.reshape(-1).tolist())


def _unsqueeze(data, args):
    x, axes = args
    for a in _axes(axes, x.dim() + axes.numel()):
        x = x.unsqueeze(a)
    return x


def _squeeze(data, args):
    x = args[0]
    if len(args) == 1:
        return x.squeeze()
    for a in reversed(_axes(args[1], x.dim())):
        x = x.squeeze(a)
    return x


def _gather(data, args):
    x, indices, axis = args
    axis = int(axis) % max(x.dim(), 1)
    idx = indices.long().to(x.device)
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    if idx.dim() == 0:
        return x.select(axis, int(idx))
    return x.index_select(axis, idx.reshape(-1)).reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1:])


def _split(data, args):
    x, axis, lengths = args
    axis = int(axis) % x.dim()
    sizes = [int(v) for v in lengths.tolist()]
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    return tuple(torch.split(x, sizes, dim=axis))


def _broadcast(data, args):
    x, shape = args[0], [int(v) for v in args[1].tolist()]
    if data.get("mode") == "bidirectional":
        shape = torch.broadcast_shapes(tuple(x.shape), tuple(shape))
    return x.expand(*shape) if x.dim() == len(shape) else x.broadcast_to(shape)


def _matmul(data, args):
    a, b = args
    if data.get("transpose_a") == "true":
        a = a.transpose(-1, -2)
    if data.get("transpose_b") == "true":
        b = b.transpose(-1, -2)
    return a @ b


def _reduce_mean(data, args):
    x, axes = args
    return x.mean(dim=_axes(axes, x.dim()), keepdim=data.get("keep_dims") == "true")


def _prelu(data, args):
    x, slope = args
    if slope.numel() == 1 or (x.dim() > 1 and slope.numel() == x.shape[1]):
        return F.prelu(x, slope.reshape(-1))     # native kernel: faster than a where()
    raise DrfhqError(f"PReLU slope of {slope.numel()} values for input {tuple(x.shape)} is not supported")


_OPS = {
    "Add": lambda d, a: a[0] + a[1],
    "Multiply": lambda d, a: a[0] * a[1],
    "Power": lambda d, a: torch.pow(a[0], a[1]),
    "MatMul": _matmul,
    "Convolution": lambda d, a: _conv(d, a),
    "GroupConvolution": lambda d, a: _conv(d, a, groups_from_weight=True),
    "GroupConvolutionBackpropData": lambda d, a: _conv(d, a, groups_from_weight=True, transposed=True),
    "PReLU": _prelu,
    "Reshape": _reshape,
    # shape arithmetic stays on the data's device, beside the integer constants it meets
    "ShapeOf": lambda d, a: torch.tensor(a[0].shape, dtype=torch.long, device=a[0].device),
    "Gather": _gather,
    "Concat": lambda d, a: torch.cat([t.reshape(-1) if t.dim() == 0 else t for t in a], dim=int(d.get("axis", 0))),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "VariadicSplit": _split,
    "Broadcast": _broadcast,
    "Tile": lambda d, a: a[0].repeat(*[int(v) for v in a[1].tolist()]),
    "ReduceMean": _reduce_mean,
}
