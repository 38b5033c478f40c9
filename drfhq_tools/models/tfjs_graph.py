"""Run a TensorFlow.js graph model (model.json + its weight shards) as a torch module.

A small interpreter, not a general converter: it covers the operations that TF.js' converter leaves in
convolutional embedders (fused convolutions and depthwise convolutions with their bias and activation,
element-wise maths, reductions, squeeze and reshape). Tensors stay in TensorFlow's NHWC layout, so every
constant broadcasts as the graph expects; convolutions are permuted to torch's layout and back, with
TensorFlow's SAME padding (the odd pixel after, not before). Constants become buffers under their graph
names. An operation it does not know is refused at load time, with the file and the node named.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DrfhqError

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANTISED = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
_ACTIVATIONS = {"Relu": F.relu, "Relu6": F.relu6, "Elu": F.elu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh}
_BINARY = {"Add": torch.add, "AddV2": torch.add, "Sub": torch.sub, "Mul": torch.mul, "RealDiv": torch.div,
           "Maximum": torch.maximum, "Minimum": torch.minimum}
_UNARY = {"Abs": torch.abs, "Square": torch.square, "Rsqrt": torch.rsqrt, "Sqrt": torch.sqrt, "Neg": torch.neg,
          "Exp": torch.exp, "Identity": lambda x: x, **_ACTIVATIONS}
_CONVOLUTIONS = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"}
_OTHERS = {"Placeholder", "Const", "BiasAdd", "Prelu", "Sum", "Mean", "Squeeze", "Reshape", "MatMul", "_FusedMatMul", "Softmax"}
KNOWN_OPS = frozenset(_BINARY) | frozenset(_UNARY) | _CONVOLUTIONS | _OTHERS


def _attr(node: dict, key: str, default=None):
    """A node attribute as Python: TF.js writes strings base64-encoded and integers as strings."""
    value = node.get("attr", {}).get(key)
    if value is None:
        return default
    if "list" in value:
        items = value["list"]
        if "s" in items:
            return [base64.b64decode(s).decode() for s in items["s"]]
        if "i" in items:
            return [int(i) for i in items["i"]]
        if "f" in items:
            return [float(f) for f in items["f"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    return default


def _input_name(ref: str) -> str:
    return ref.split(":")[0]


def _load_weights(model: dict, folder: Path, shards: dict[str, Path], source: str) -> dict[str, np.ndarray]:
    """Every weight of the manifest by name, dequantised to float32 where the converter quantised it."""
    arrays = {}
    for group in model.get("weightsManifest", []):
        files = [Path(shards.get(p, folder / p)) for p in group["paths"]]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DrfhqError(f"{source}: weight shard {', '.join(missing)} not found")
        data = b"".join(f.read_bytes() for f in files)
        offset = 0
        for spec in group["weights"]:
            shape, quant = [int(d) for d in spec["shape"]], spec.get("quantization")
            count = int(np.prod(shape)) if shape else 1
            stored = np.dtype(_QUANTISED[quant["dtype"]] if quant else _DTYPES.get(spec["dtype"], np.float32))
            if not quant and spec["dtype"] not in _DTYPES:
                raise DrfhqError(f"{source}: weight {spec['name']} has unsupported dtype {spec['dtype']}")
            size = count * stored.itemsize
            if offset + size > len(data):
                raise DrfhqError(f"{source}: weight shards end before {spec['name']} (truncated file?)")
            raw = np.frombuffer(data, dtype=stored, count=count, offset=offset).reshape(shape)
            offset += size
            if quant and quant["dtype"] != "float16":
                raw = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
            arrays[spec["name"]] = raw.astype(_DTYPES[spec["dtype"]]) if spec["dtype"] in _DTYPES else raw
    return arrays


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME: output ceil(size / stride); an odd total pad puts its extra pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class TfjsGraph(nn.Module):
    """`model(x)` with x as the graph's input (NHWC float) -> its output. Names: `input_name`, `output_name`.
    shards: the manifest's shard names -> their files, where they do not lie beside model.json."""

    def __init__(self, model_json: str | Path, output: str | None = None, shards: dict[str, Path] | None = None):
        super().__init__()
        model_json = Path(model_json)
        try:
            model = json.loads(model_json.read_text())
        except (OSError, ValueError) as exc:
            raise DrfhqError(f"{model_json}: not a readable TF.js model.json ({exc})") from None
        if model.get("format") != "graph-model":
            raise DrfhqError(f"{model_json}: format {model.get('format')!r}, expected a TF.js graph-model")
        nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
        weights = _load_weights(model, model_json.parent, shards or {}, str(model_json))
        signature = model.get("signature") or model.get("userDefinedMetadata", {}).get("signature", {})
        outputs = signature.get("outputs", {})
        self.output_name = output or (next(iter(outputs.values()))["name"] if outputs else list(nodes)[-1])
        self.output_name = _input_name(self.output_name)
        if self.output_name not in nodes:
            raise DrfhqError(f"{model_json}: no node {self.output_name!r}")
        self.order = self._order(nodes, model_json)
        self.nodes = {name: nodes[name] for name in self.order}
        placeholders = [n for n in self.order if nodes[n]["op"] == "Placeholder"]
        if len(placeholders) != 1:
            raise DrfhqError(f"{model_json}: {len(placeholders)} inputs; one is supported")
        self.input_name = placeholders[0]
        self._buffer_of: dict[str, str] = {}
        for name in self.order:
            if nodes[name]["op"] != "Const":
                continue
            if name not in weights:
                raise DrfhqError(f"{model_json}: constant {name} has no weights in the manifest")
            safe = re.sub(r"[^0-9A-Za-z_]", "_", name)
            self.register_buffer(safe, torch.from_numpy(np.ascontiguousarray(weights[name])), persistent=False)
            self._buffer_of[name] = safe

    def _order(self, nodes: dict, source: Path) -> list[str]:
        """The nodes the output needs, each after its inputs (iterative depth-first)."""
        order, state, stack = [], {}, [(self.output_name, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                state[name] = "done"
                order.append(name)
                continue
            if state.get(name) == "done":
                continue
            if name not in nodes:
                raise DrfhqError(f"{source}: node {name!r} is used but not defined")
            if nodes[name]["op"] not in KNOWN_OPS:
                raise DrfhqError(f"{source}: node {name} uses operation {nodes[name]['op']}, which this reader "
                                 f"does not support ({', '.join(sorted(KNOWN_OPS))})")
            state[name] = "open"
            stack.append((name, True))
            for ref in reversed(nodes[name].get("input", [])):
                if not ref.startswith("^") and state.get(_input_name(ref)) != "done":
                    stack.append((_input_name(ref), False))
        return order

    def constant(self, name: str) -> torch.Tensor:
        return getattr(self, self._buffer_of[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for name in self.order:
            node = self.nodes[name]
            op = node["op"]
            if op == "Const":
                values[name] = self.constant(name)
                continue
            if op == "Placeholder":
                values[name] = x
                continue
            args = [values[_input_name(r)] for r in node.get("input", []) if not r.startswith("^")]
            values[name] = self._run(op, node, args)
        return values[self.output_name]

    def _run(self, op: str, node: dict, args: list[torch.Tensor]) -> torch.Tensor:
        if op in _BINARY:
            return _BINARY[op](args[0], args[1])
        if op in _UNARY:
            return _UNARY[op](args[0])
        if op in _CONVOLUTIONS:
            return self._convolution(op, node, args)
        if op == "BiasAdd":
            return args[0] + args[1]
        if op == "Softmax":
            return torch.softmax(args[0], dim=-1)
        if op == "Prelu":
            return F.relu(args[0]) - args[1] * F.relu(-args[0])
        if op in ("Sum", "Mean"):
            axes = [int(a) for a in args[1].reshape(-1).tolist()]
            reduce = torch.sum if op == "Sum" else torch.mean
            return reduce(args[0], dim=axes, keepdim=bool(_attr(node, "keep_dims", False)))
        if op == "Squeeze":
            dims = _attr(node, "squeeze_dims", []) or [d for d, s in enumerate(args[0].shape) if s == 1]
            for d in sorted((d % args[0].dim() for d in dims), reverse=True):
                args[0] = args[0].squeeze(d)
            return args[0]
        if op == "Reshape":
            return args[0].reshape([int(v) for v in args[1].reshape(-1).tolist()])
        if op in ("MatMul", "_FusedMatMul"):
            a = args[0].transpose(-1, -2) if _attr(node, "transpose_a", False) else args[0]
            b = args[1].transpose(-1, -2) if _attr(node, "transpose_b", False) else args[1]
            return self._fused(node, a @ b, args[2:])
        raise DrfhqError(f"operation {op} of node {node['name']} is not supported")   # _order refuses it first

    def _convolution(self, op: str, node: dict, args: list[torch.Tensor]) -> torch.Tensor:
        if _attr(node, "data_format", "NHWC") != "NHWC":
            raise DrfhqError(f"node {node['name']}: data format {_attr(node, 'data_format')} (only NHWC is supported)")
        x, kernel = args[0].permute(0, 3, 1, 2), args[1]
        strides, dilations = _attr(node, "strides", [1, 1, 1, 1]), _attr(node, "dilations", [1, 1, 1, 1])
        if "Depthwise" in op:      # H x W x C x multiplier -> (C * multiplier) x 1 x H x W, one group per channel
            kh, kw, channels, multiplier = kernel.shape
            weight, groups = kernel.permute(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw), channels
        else:                      # H x W x in x out -> out x in x H x W
            kh, kw = kernel.shape[:2]
            weight, groups = kernel.permute(3, 2, 0, 1), 1
        padding = _attr(node, "padding", "VALID")
        if padding == "SAME":
            top, bottom = _same_padding(x.shape[2], kh, strides[1], dilations[1])
            left, right = _same_padding(x.shape[3], kw, strides[2], dilations[2])
            x = F.pad(x, (left, right, top, bottom))
        elif padding == "EXPLICIT":
            pads = _attr(node, "explicit_paddings", [])
            x = F.pad(x, (pads[4], pads[5], pads[2], pads[3]))
        y = F.conv2d(x, weight.contiguous(), None, (strides[1], strides[2]), 0, (dilations[1], dilations[2]), groups)
        return self._fused(node, y.permute(0, 2, 3, 1), args[2:])

    def _fused(self, node: dict, y: torch.Tensor, extra: list[torch.Tensor]) -> torch.Tensor:
        """The converter's fused tail: BiasAdd, then one activation (Prelu takes its alpha as the next argument)."""
        for fused in _attr(node, "fused_ops", []) or []:
            if fused == "BiasAdd":
                y, extra = y + extra[0], extra[1:]
            elif fused == "Prelu":
                y, extra = F.relu(y) - extra[0] * F.relu(-y), extra[1:]
            elif fused == "LeakyRelu":
                y = F.leaky_relu(y, _attr(node, "leakyrelu_alpha", 0.2))
            elif fused in _ACTIVATIONS:
                y = _ACTIVATIONS[fused](y)
            else:
                raise DrfhqError(f"node {node['name']}: fused operation {fused} is not supported")
        return y
