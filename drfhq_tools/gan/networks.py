"""Generators as the training and translation code sees them, whatever their architecture.

A generator here is an `nn.Module` with
  z_dim, w_dim, num_ws, img_resolution       sizes
  map(z) -> w                                 the mapping network
  synthesize(w) -> image in [-1, 1]           w: N x w_dim, or W+: N x num_ws x w_dim
  style_resolution(i) -> int                  resolution the i-th W+ style drives
  parameter_groups() -> {name: group}         'mapping' or the resolution (int) of the synthesis layer
                                              a parameter belongs to; frozen parts are left out
Freezing ("the mapping network and the first synthesis blocks") and layer swapping ("G_render below
32 px, G_real above") are written once, on these groups, for StyleGAN2 and MobileStyleGAN alike.

Bases (`--base`): `none` (a fresh StyleGAN2 of the chosen configuration), `mobilestylegan-ffhq`
(offline), `stylegan2-ffhq` (the user's imported file), a path to an NVIDIA `.pkl`, a rosinality
`.pt`, or a folder in our own format (`generator.json` + `generator.safetensors`).
"""

from __future__ import annotations

import copy
import io
import json
import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import DrfhqError
from ..io import atomic_write_json, sha256_file
from .stylegan2 import CONFIGS, Generator, StyleGAN2Config, load_state, rosinality_to_nvidia

BASES = {   # --base name -> (registry files it needs, licence, what it is)
    "none": ((), "MIT (this toolkit; random initialisation)",
             "a fresh StyleGAN2 of --config, trained from scratch (small resolutions, demos, tests)"),
    "mobilestylegan-ffhq": (("mobilestylegan-mapping-xml", "mobilestylegan-mapping-bin", "mobilestylegan-synthesis-xml",
                             "mobilestylegan-synthesis-bin"),
                            "NVIDIA Source Code License (non-commercial)",
                            "MobileStyleGAN distilled from the FFHQ StyleGAN2, 1024 px, offline (random-face package)"),
    "stylegan2-ffhq": (("stylegan2-ffhq",), "NVIDIA Source Code License (non-commercial)",
                       "the FFHQ StyleGAN2 you import (NVIDIA .pkl or rosinality .pt)"),
}


def base_rows() -> list[dict]:
    """The --base choices, whether their files are in the weights home, and their licences."""
    from ..models.weights import try_resolve

    return [{"name": name, "present": all(try_resolve(f) is not None for f in files), "licence": licence,
             "what": what, "files": ", ".join(files) or "-"} for name, (files, licence, what) in BASES.items()]


# ---------------------------------------------------------------- groups, freezing, swapping

def trainable_names(generator: nn.Module, freeze_mapping: bool = False, freeze_below: int = 0) -> list[str]:
    """Parameters to fine-tune: all of the generator's groups except the frozen ones."""
    names = []
    for name, group in generator.parameter_groups().items():
        if group == "mapping" and freeze_mapping:
            continue
        if group != "mapping" and group < freeze_below:
            continue
        names.append(name)
    return names


def set_trainable(generator: nn.Module, names: list[str]) -> list[nn.Parameter]:
    wanted = set(names)
    params = []
    for name, p in generator.named_parameters():
        p.requires_grad_(name in wanted)
        if name in wanted:
            params.append(p)
    return params


def layer_swap(coarse: nn.Module, fine: nn.Module, swap_resolution: int) -> nn.Module:
    """Toonify-style blend: synthesis layers below `swap_resolution` (and the mapping) from `coarse`,
    the rest from `fine`. Both must share one architecture (G_render is a fine-tuned copy of G_real)."""
    blended = copy.deepcopy(fine)
    source = dict(coarse.named_parameters())
    groups = blended.parameter_groups()
    with torch.no_grad():
        for name, p in blended.named_parameters():
            group = groups.get(name)
            if group == "mapping" or (group is not None and group < swap_resolution):
                p.copy_(source[name])
    return blended


# ---------------------------------------------------------------- our format

def architecture_of(generator: nn.Module) -> dict:
    if isinstance(generator, Generator):
        from dataclasses import asdict

        return {"architecture": "stylegan2", "config": asdict(generator.cfg)}
    from .mobilestylegan import MobileStyleGAN

    if isinstance(generator, MobileStyleGAN):
        return {"architecture": "mobilestylegan-ffhq", "base_sha256": generator.weights_sha256}
    raise DrfhqError(f"cannot save a generator of type {type(generator).__name__}")


def save_generator(generator: nn.Module, folder: str | Path, extra: dict | None = None, fmt: str = "safetensors") -> Path:
    """`generator.json` (architecture, config, provenance) + `generator.safetensors` or `generator.pt`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in generator.state_dict().items()}
    name = f"generator.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    tmp = folder / f".{name}.tmp"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(tmp))
    elif fmt == "pt":
        torch.save(state, tmp)
    else:
        raise DrfhqError(f"checkpoint format {fmt}: safetensors or pt")
    tmp.replace(folder / name)
    for other in {"generator.safetensors", "generator.pt"} - {name}:
        (folder / other).unlink(missing_ok=True)
    atomic_write_json(folder / "generator.json", {"format": "drfhq-generator", "version": 2, "weights": name,
                                                  **architecture_of(generator), **(extra or {})})
    return folder


def load_generator(folder: str | Path) -> nn.Module:
    folder = Path(folder)
    meta_path = folder / "generator.json"
    if not meta_path.is_file():
        raise DrfhqError(f"{folder}: not a drfhq generator folder (no generator.json)")
    meta = json.loads(meta_path.read_text())
    weights = folder / meta.get("weights", "generator.safetensors")
    if not weights.is_file():
        raise DrfhqError(f"{weights}: missing (generator.json names it)")
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    arch = meta.get("architecture", "stylegan2")
    if arch == "stylegan2":
        generator = Generator(StyleGAN2Config(**meta["config"]))
        load_state(generator, state, str(weights))
    elif arch == "mobilestylegan-ffhq":
        from .mobilestylegan import MobileStyleGAN

        generator = MobileStyleGAN()
        missing = set(generator.state_dict()) ^ set(state)
        if missing:
            raise DrfhqError(f"{weights}: not a MobileStyleGAN state ({len(missing)} keys differ, e.g. {sorted(missing)[:4]})")
        generator.load_state_dict(state)
    else:
        raise DrfhqError(f"{meta_path}: unknown architecture '{arch}'")
    return generator.eval()


# ---------------------------------------------------------------- official checkpoints

class _Stub:
    """Stands in for any class named in a checkpoint; keeps the state it is given, runs nothing."""

    class_name = "?"

    def __init__(self, *args, **kwargs):
        self.stub_args, self.stub_state = args, {}

    def __setstate__(self, state):
        self.stub_state = state if isinstance(state, dict) else {"state": state}


def _stub_class(qualname: str) -> type:
    return type("Stub", (_Stub,), {"class_name": qualname})


def _persistent_object(meta):
    """NVIDIA's torch_utils.persistence: `meta` carries the class source code, which is never run."""
    stub = _stub_class(meta.get("class_name", "?") if isinstance(meta, dict) else "?")()
    state = meta.get("state", {}) if isinstance(meta, dict) else {}
    stub.stub_state = state if isinstance(state, dict) else {}
    return stub


def _storage_from_bytes(data: bytes):
    # torch.storage._load_from_bytes would call torch.load(weights_only=False); this one cannot run code
    return torch.load(io.BytesIO(data), weights_only=True)


def _rebuild_parameter(data, requires_grad, backward_hooks, *state):
    return data


def _numpy_globals() -> dict:
    import numpy as np

    out = {("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray}
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(core, "_reconstruct")] = np._core.multiarray._reconstruct
        out[(core, "scalar")] = np._core.multiarray.scalar
    return out


_SAFE_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): dict,
    ("torch", "Size"): tuple,
    ("dnnlib.util", "EasyDict"): dict,
    ("dnnlib", "EasyDict"): dict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_object,
    **_numpy_globals(),
}
_STUB_MODULES = ("torch.nn.modules.", "dnnlib.", "torch_utils.", "training.")


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds tensors, arrays and plain containers; module classes become inert stubs that only hold
    their state. Any other global (os.system, builtins.eval, ...) is refused."""

    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module.startswith(_STUB_MODULES) and name[:1].isupper():
            return _stub_class(f"{module}.{name}")
        raise pickle.UnpicklingError(f"refused global {module}.{name}: the checkpoint reader never runs code from a file")


def _module_tensors(stub, prefix: str = "") -> dict[str, torch.Tensor]:
    state = getattr(stub, "stub_state", {})
    out = {}
    for kind in ("_parameters", "_buffers"):
        for key, value in (state.get(kind) or {}).items():
            if isinstance(value, torch.Tensor):
                out[prefix + key] = value
    for key, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(_module_tensors(child, f"{prefix}{key}."))
    return out


def read_nvidia_pkl(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """`G_ema` weights and init kwargs from a stylegan2-ada-pytorch / stylegan3 network pickle."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = _RestrictedUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, RuntimeError) as exc:
        raise DrfhqError(f"{path}: not a readable NVIDIA network pickle: {exc}") from None
    if not isinstance(data, dict) or "G_ema" not in data:
        raise DrfhqError(f"{path}: no G_ema in this pickle (keys: {sorted(data)[:8] if isinstance(data, dict) else type(data).__name__})")
    g = data["G_ema"]
    kwargs = dict(getattr(g, "stub_state", {}).get("_init_kwargs") or {})
    if not kwargs:
        kwargs = dict(getattr(g, "stub_state", {}).get("init_kwargs") or {})
    return _module_tensors(g), kwargs


def _config_from_state(state: dict, kwargs: dict) -> StyleGAN2Config:
    res = [int(k.split(".")[1][1:]) for k in state if k.startswith("synthesis.b") and k.endswith(".conv1.weight")]
    if not res:
        raise DrfhqError(f"no StyleGAN2 synthesis blocks among the keys, e.g. {sorted(state)[:6]}")
    resolution = max(res)
    c_res = {r: state[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res}
    synth = kwargs.get("synthesis_kwargs") or {}
    channel_max = int(synth.get("channel_max", max(c_res.values())))
    channel_base = int(synth.get("channel_base", c_res[resolution] * resolution))
    mapping_layers = len({k.split(".")[1] for k in state if k.startswith("mapping.fc")})
    return StyleGAN2Config(resolution=resolution, z_dim=state["mapping.fc0.weight"].shape[1],
                           w_dim=state["mapping.fc0.weight"].shape[0], mapping_layers=mapping_layers,
                           channel_base=channel_base, channel_max=channel_max)


def load_official(path: str | Path) -> Generator:
    """An NVIDIA `.pkl` or a rosinality `.pt` as our StyleGAN2 generator (strict: unmapped keys are named)."""
    import zipfile

    path = Path(path)
    # by content, not name: `models import stylegan2-ffhq` stores either kind as stylegan2-ffhq.pkl
    if not zipfile.is_zipfile(path):       # NVIDIA's network pickles are plain pickles; torch.save writes zips
        state, kwargs = read_nvidia_pkl(path)
        if any(k.startswith("synthesis.L") or ".affine." in k and "input" in k for k in state):
            raise DrfhqError(f"{path}: a StyleGAN3 generator (alias-free layers); only StyleGAN2 layouts map onto this generator")
        cfg = _config_from_state(state, kwargs)
        generator = Generator(cfg)
        state = {k: v for k, v in state.items() if not k.endswith((".resample_filter", ".up_filter", ".down_filter"))}
        load_state(generator, state, str(path))
        return generator.eval()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign files
        raise DrfhqError(f"{path}: not a torch checkpoint readable without running code: {exc}") from None
    if isinstance(raw, dict) and "g_ema" in raw:
        g_ema = raw["g_ema"]
        n_map = len({k.split(".")[1] for k in g_ema if k.startswith("style.") and k.endswith(".weight")})
        size = 2 ** (len([k for k in g_ema if k.startswith("to_rgbs.") and k.endswith(".conv.weight")]) + 2)
        c = {2 ** (i + 3): g_ema[f"convs.{2 * i + 1}.conv.weight"].shape[1] for i in range(int(size).bit_length() - 3)}
        cfg = StyleGAN2Config(resolution=size, z_dim=g_ema["style.1.weight"].shape[1], w_dim=g_ema["style.1.weight"].shape[0],
                              mapping_layers=n_map, channel_max=max(c.values()), channel_base=c[size] * size)
        state = rosinality_to_nvidia({**g_ema, **({"latent_avg": raw["latent_avg"]} if "latent_avg" in raw else {})}, cfg)
        generator = Generator(cfg)
        load_state(generator, state, str(path))
        return generator.eval()
    keys = sorted(raw)[:8] if isinstance(raw, dict) else type(raw).__name__
    raise DrfhqError(f"{path}: unknown checkpoint layout (expected NVIDIA G_ema .pkl or rosinality g_ema .pt; top-level keys {keys})")


def load_base(base: str, config: str = "tiny", seed: int = 0) -> tuple[nn.Module, dict]:
    """The pretrained G_real for `--base`, and a provenance record for the run's config."""
    if base == "none":
        if config not in CONFIGS:
            raise DrfhqError(f"--config {config}: choose one of {', '.join(CONFIGS)}")
        torch.manual_seed(seed)
        return Generator(CONFIGS[config]).eval(), {"base": "none", "config": config, "seed": seed}
    if base == "mobilestylegan-ffhq":
        from .mobilestylegan import LICENCE, MobileStyleGAN

        g = MobileStyleGAN().eval()
        return g, {"base": base, "licence": LICENCE, "weights_sha256": g.weights_sha256}
    if base == "stylegan2-ffhq":
        from ..models.weights import resolve

        found = resolve("stylegan2-ffhq")
        return load_official(found.path), {"base": base, "file": str(found.path), "sha256": found.sha256}
    path = Path(base)
    if path.is_dir():
        return load_generator(path), {"base": str(path), "sha256": sha256_file(next(
            p for p in (path / "generator.safetensors", path / "generator.pt") if p.is_file()))}
    if path.is_file():
        return load_official(path), {"base": str(path), "sha256": sha256_file(path)}
    raise DrfhqError(f"--base {base}: not a file or folder, and not one of {', '.join(BASES)}")
