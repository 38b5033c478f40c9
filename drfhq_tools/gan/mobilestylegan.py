"""MobileStyleGAN (Belousov 2021, distilled from NVIDIA's FFHQ StyleGAN2) as a torch generator.

Both networks are the `random-face` package's OpenVINO IR files, run by `openvino_ir.IRGraph`: a
mapping network z -> w (PixelNorm, 8 linear layers with LeakyReLU, equalised-LR scale folded in) and a
synthesis network w -> 1024 px RGB in [-1, 1] (a learned constant, modulated convolutions, inverse
Haar wavelet upsampling, styled depthwise-separable convolutions, frozen noise; 23 style affines).
W+ is supported: each style affine can take its own w. Weights: NVIDIA Source Code License
(non-commercial).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.weights import resolve
from .openvino_ir import IRGraph

LICENCE = "NVIDIA Source Code License (non-commercial); MobileStyleGAN distilled from the FFHQ StyleGAN2"


class MobileStyleGAN(nn.Module):
    z_dim = w_dim = 512
    resolution = 1024
    weights_prescaled = True     # equalised-LR gains are folded into the IR's weights (see train.py)

    def __init__(self):
        super().__init__()
        files = {k: resolve(f"mobilestylegan-{k}") for k in ("mapping-xml", "mapping-bin", "synthesis-xml", "synthesis-bin")}
        self.weights_sha256 = {k: v.sha256 for k, v in files.items()}
        self.mapping = IRGraph(files["mapping-xml"].path, files["mapping-bin"].path)
        self.synthesis = IRGraph(files["synthesis-xml"].path, files["synthesis-bin"].path)
        style_input = next(l for l, i in self.synthesis.layers.items() if i["type"] == "Parameter")
        # the style affines: matrix products that read w directly. The IR lists them fine to coarse;
        # W+ index 0 is the coarsest (the 4x4 constant's convolution), as in StyleGAN2.
        self.style_layers = list(reversed([l for l in self.synthesis.order if self.synthesis.layers[l]["type"] == "MatMul"
                                           and any(src == style_input for _, src, _ in self.synthesis.inputs_of[l])]))
        self.style_names = [self.synthesis.layers[self.synthesis.inputs_of[l][1][1]]["name"] for l in self.style_layers]
        self.num_ws = len(self.style_layers)
        self._style_input = style_input

    def style_resolution(self, index: int) -> int:
        """Output resolution of the block a W+ style drives: m.conv1 -> 4, m.layers.k -> 8 * 2**k."""
        name = self.style_names[index]
        return 4 if name.startswith("m.conv1") else 8 * 2 ** int(name.split(".")[2])

    @property
    def img_resolution(self) -> int:
        return self.resolution

    def parameter_groups(self) -> dict[str, str | int]:
        """Learned weights -> 'mapping' or the resolution of the synthesis layer they belong to. The
        inverse-Haar kernels, the frozen noise maps and scalar constants are left out (never trained)."""
        if getattr(self, "_groups", None) is None:
            self._groups = {f"mapping.{key}": "mapping" for lid, key in self.mapping.param_names.items()
                            if self.mapping.constant(lid).is_floating_point() and self.mapping.constant(lid).numel() > 1}
            graph = self.synthesis
            consumers: dict[int, list[int]] = {}
            for lid, ins in graph.inputs_of.items():
                for _, src, _ in ins:
                    consumers.setdefault(src, []).append(lid)
            convs = ("Convolution", "GroupConvolution", "GroupConvolutionBackpropData")
            for lid, key in graph.param_names.items():
                value = graph.constant(lid)
                if not value.is_floating_point() or value.numel() <= 1:
                    continue
                first = [graph.layers[c]["type"] for c in consumers.get(lid, [])]
                if "GroupConvolutionBackpropData" in first or (value.dim() == 4 and value.shape[:2] == (1, 1)):
                    continue   # wavelet kernel or noise map
                frontier, seen, resolution = list(consumers.get(lid, [])), set(), None
                while frontier and resolution is None:   # breadth-first to the first convolution it feeds
                    nxt = []
                    for c in frontier:
                        info = graph.layers[c]
                        if info["type"] in convs and len(info["out_dims"]) == 4:
                            resolution = max(info["out_dims"][2:])
                            break
                        for d in consumers.get(c, []):
                            if d not in seen:
                                seen.add(d)
                                nxt.append(d)
                    frontier = nxt
                if resolution is not None:
                    self._groups[f"synthesis.{key}"] = resolution
        return self._groups

    def map(self, z: torch.Tensor) -> torch.Tensor:
        return self.mapping({self.mapping.input_names[0]: z})

    def noise_maps(self) -> dict[str, torch.Tensor]:
        return {}      # MobileStyleGAN's noise is frozen into the graph: nothing for a projector to fit

    def synthesize(self, w: torch.Tensor, noise=None) -> torch.Tensor:
        """w: N x 512 (one w) or N x num_ws x 512 (W+) -> N x 3 x 1024 x 1024 in about [-1, 1]."""
        if w.dim() == 2:
            return self.synthesis({self.synthesis.input_names[0]: w})
        if w.shape[1] != self.num_ws:
            raise ValueError(f"W+ needs {self.num_ws} styles, got {w.shape[1]}")
        slot = {lid: k for k, lid in enumerate(self.style_layers)}

        def per_layer_w(lid, info, args):
            if lid in slot:
                a, b = w[:, slot[lid]], args[1]
                return a @ (b.transpose(-1, -2) if info["data"].get("transpose_b") == "true" else b)
            return None

        return self.synthesis({self.synthesis.input_names[0]: w[:, 0]}, override=per_layer_w)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesize(self.map(z))
