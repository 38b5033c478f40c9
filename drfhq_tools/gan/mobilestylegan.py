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

    def map(self, z: torch.Tensor) -> torch.Tensor:
        return self.mapping({self.mapping.input_names[0]: z})

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
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
