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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import DrfhqError
from ..io import atomic_write_json, sha256_file
from .stylegan2 import (CONFIGS, Discriminator, Generator, StyleGAN2Config, load_state, rosinality_d_to_nvidia,
                        rosinality_to_nvidia)

BASES = {   # --base name -> (registry files it needs, licence, what it is)
    "none": ((), "MIT (this toolkit; random initialisation)",
             "a fresh StyleGAN2 of --network, trained from scratch (small resolutions, demos, tests)"),
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


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Protocol 2 writes bytes as _codecs.encode(str, 'latin1'); only that encoding is honoured."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refused _codecs.encode other than latin1 of a string")
    return text.encode("latin1")


def _reconstructor(cls, base, state=None):
    """copyreg._reconstructor (protocols 0-1 objects) for stub classes only."""
    if not (isinstance(cls, type) and issubclass(cls, _Stub)):
        raise pickle.UnpicklingError(f"refused copyreg._reconstructor of {cls!r}")
    return cls()


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
    # plain containers that protocols 2 and 3 spell as globals (4 and 5 have opcodes for them)
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "bytearray"): bytearray,
    ("builtins", "object"): object, ("_codecs", "encode"): _latin1_bytes, ("copyreg", "_reconstructor"): _reconstructor,
    ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset, ("__builtin__", "object"): object,
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


def _init_kwargs(stub) -> dict:
    state = getattr(stub, "stub_state", {})
    return dict(state.get("_init_kwargs") or state.get("init_kwargs") or {})


_FILTERS = (".resample_filter", ".up_filter", ".down_filter")


def read_nvidia_pkl(path: str | Path) -> dict[str, tuple[dict[str, torch.Tensor], dict]]:
    """Every network of a stylegan2-ada-pytorch / stylegan3 pickle (`G`, `G_ema`, `D`, `augment_pipe`)
    as {name: (tensors by NVIDIA's state-dict key, init kwargs)}; the other entries are left out."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = _RestrictedUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, RuntimeError, TypeError) as exc:
        raise DrfhqError(f"{path}: not a readable NVIDIA network pickle: {exc}") from None
    if not isinstance(data, dict) or "G_ema" not in data:
        raise DrfhqError(f"{path}: no G_ema in this pickle (keys: {sorted(data)[:8] if isinstance(data, dict) else type(data).__name__})")
    return {name: (_module_tensors(data[name]), _init_kwargs(data[name]))
            for name in ("G", "G_ema", "D", "augment_pipe") if isinstance(data.get(name), _Stub)}


def _channels_from(state: dict, pattern: str, kwargs: dict, resolution: int) -> tuple[int, int]:
    """(channel_base, channel_max) from the init kwargs, else from the weight shapes: `pattern` names a
    weight whose first axis holds the channels of resolution r."""
    found = {r: state[pattern.format(r)].shape[0] for r in (2 ** i for i in range(2, 11)) if pattern.format(r) in state}
    channel_max = int(kwargs.get("channel_max", max(found.values())))
    channel_base = int(kwargs.get("channel_base", found[resolution] * resolution))
    return channel_base, channel_max


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def _nvidia_generator(state: dict, kwargs: dict, source: str) -> Generator:
    if int(kwargs.get("c_dim", 0) or 0) > 0:
        raise DrfhqError(f"{source}: a conditional generator (c_dim {kwargs['c_dim']}); only unconditional StyleGAN2 maps here")
    if any(k.startswith("synthesis.L") or ".affine." in k and "input" in k for k in state):
        raise DrfhqError(f"{source}: a StyleGAN3 generator (alias-free layers); only StyleGAN2 layouts map onto this generator")
    synth = kwargs.get("synthesis_kwargs") or {}
    if synth.get("architecture", "skip") != "skip":
        raise DrfhqError(f"{source}: synthesis architecture '{synth['architecture']}'; only NVIDIA's default 'skip' maps here")
    res = [int(k.split(".")[1][1:]) for k in state if k.startswith("synthesis.b") and k.endswith(".conv1.weight")]
    if not res:
        raise DrfhqError(f"{source}: no StyleGAN2 synthesis blocks among the keys, e.g. {sorted(state)[:6]}")
    resolution = max(res)
    base, cmax = _channels_from(state, "synthesis.b{}.conv1.weight", synth, resolution)
    mapping_layers = len({k.split(".")[1] for k in state if k.startswith("mapping.fc")})
    cfg = StyleGAN2Config(resolution=resolution, z_dim=state["mapping.fc0.weight"].shape[1], w_dim=state["mapping.fc0.weight"].shape[0],
                          mapping_layers=mapping_layers, channel_base=base, channel_max=cmax,
                          mapping_lr=float((kwargs.get("mapping_kwargs") or {}).get("lr_multiplier", 0.01)),
                          conv_clamp=_optional_float(synth.get("conv_clamp")), num_fp16_res=int(synth.get("num_fp16_res", 0) or 0))
    generator = Generator(cfg)
    load_state(generator, {k: v for k, v in state.items() if not k.endswith(_FILTERS)}, source)
    return generator.eval()


def _nvidia_discriminator(state: dict, kwargs: dict, source: str) -> Discriminator:
    if int(kwargs.get("c_dim", 0) or 0) > 0:
        raise DrfhqError(f"{source}: a conditional discriminator (c_dim {kwargs['c_dim']}); only unconditional D maps here")
    if kwargs.get("architecture", "resnet") != "resnet":
        raise DrfhqError(f"{source}: discriminator architecture '{kwargs['architecture']}'; only NVIDIA's default 'resnet' maps here")
    epilogue = kwargs.get("epilogue_kwargs") or {}
    if int(epilogue.get("mbstd_num_channels", 1)) != 1:
        raise DrfhqError(f"{source}: minibatch-std with {epilogue['mbstd_num_channels']} channels; only 1 maps here")
    res = [int(k.split(".")[0][1:]) for k in state if k.endswith(".fromrgb.weight")]
    if not res:
        raise DrfhqError(f"{source}: no discriminator input block (b<res>.fromrgb) among the keys, e.g. {sorted(state)[:6]}")
    resolution = max(res)
    state = {k: v for k, v in state.items() if not k.endswith(_FILTERS)}
    if "b4.conv.weight" not in state:
        raise DrfhqError(f"{source}: no discriminator epilogue (b4.conv) among the keys")
    base, cmax = _channels_from({**state, "b4.conv0.weight": state["b4.conv.weight"]}, "b{}.conv0.weight", kwargs, resolution)
    cfg = StyleGAN2Config(resolution=resolution, channel_base=base, channel_max=cmax,
                          conv_clamp=_optional_float(kwargs.get("conv_clamp")), num_fp16_res=int(kwargs.get("num_fp16_res", 0) or 0))
    group = epilogue.get("mbstd_group_size", 4)
    d = Discriminator(cfg, mbstd_group=int(group) if group else 4)
    load_state(d, state, source)
    return d.eval()


@dataclass
class OfficialNetworks:
    """What an official file holds, as our modules: G_ema (what the file's authors generate with), the
    trained G where the file has one, D where it has one, and notes on the rest (augment pipe, ...)."""
    g_ema: Generator
    g: Generator | None
    d: Discriminator | None
    kind: str                                # nvidia-pkl | rosinality-pt
    notes: dict = field(default_factory=dict)


def read_official(path: str | Path) -> OfficialNetworks:
    """An NVIDIA `.pkl` (protocols 2-5) or a rosinality `.pt`, every network in it, strictly mapped
    (unmapped keys are named). The file kind is read from its content, not its name."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise DrfhqError(f"{path}: no such checkpoint file")
    # by content: `models import stylegan2-ffhq` stores either kind as stylegan2-ffhq.pkl
    if not zipfile.is_zipfile(path):       # NVIDIA's network pickles are plain pickles; torch.save writes zips
        nets = read_nvidia_pkl(path)
        g_ema = _nvidia_generator(*nets["G_ema"], f"{path} (G_ema)")
        g = _nvidia_generator(*nets["G"], f"{path} (G)") if "G" in nets else None
        d = _nvidia_discriminator(*nets["D"], f"{path} (D)") if "D" in nets else None
        notes = {}
        if "augment_pipe" in nets:
            tensors, kwargs = nets["augment_pipe"]
            notes["augment_pipe"] = {"p": float(tensors["p"]) if "p" in tensors else None,
                                     "kwargs": {k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool))}}
        return OfficialNetworks(g_ema, g, d, "nvidia-pkl", notes)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign files
        raise DrfhqError(f"{path}: not a torch checkpoint readable without running code: {exc}") from None
    if isinstance(raw, dict) and "g_ema" in raw:
        def generator(state: dict, name: str) -> Generator:
            n_map = len({k.split(".")[1] for k in state if k.startswith("style.") and k.endswith(".weight")})
            size = 2 ** (len([k for k in state if k.startswith("to_rgbs.") and k.endswith(".conv.weight")]) + 2)
            c = {2 ** (i + 3): state[f"convs.{2 * i + 1}.conv.weight"].shape[1] for i in range(int(size).bit_length() - 3)}
            cfg = StyleGAN2Config(resolution=size, z_dim=state["style.1.weight"].shape[1], w_dim=state["style.1.weight"].shape[0],
                                  mapping_layers=n_map, channel_max=max(c.values()), channel_base=c[size] * size)
            g = Generator(cfg)
            load_state(g, rosinality_to_nvidia({**state, **({"latent_avg": raw["latent_avg"]} if "latent_avg" in raw else {})}, cfg),
                       f"{path} ({name})")
            return g.eval()

        g_ema = generator(raw["g_ema"], "g_ema")
        g = generator(raw["g"], "g") if isinstance(raw.get("g"), dict) else None
        d = None
        if isinstance(raw.get("d"), dict):
            cfg = StyleGAN2Config(resolution=g_ema.cfg.resolution, channel_base=g_ema.cfg.channel_base, channel_max=g_ema.cfg.channel_max)
            d = Discriminator(cfg)
            load_state(d, rosinality_d_to_nvidia(raw["d"], cfg), f"{path} (d)")
            d.eval()
        return OfficialNetworks(g_ema, g, d, "rosinality-pt")
    keys = sorted(raw)[:8] if isinstance(raw, dict) else type(raw).__name__
    raise DrfhqError(f"{path}: unknown checkpoint layout (expected NVIDIA G_ema .pkl or rosinality g_ema .pt; top-level keys {keys})")


def load_official(path: str | Path) -> Generator:
    """The generator an official file's authors sample from (NVIDIA G_ema, rosinality g_ema)."""
    return read_official(path).g_ema


@dataclass
class BaseNetworks:
    """`--base` resolved: the pretrained G_real, the file's discriminator if it has one, provenance."""
    generator: nn.Module
    discriminator: Discriminator | None
    info: dict


def load_base(base: str, network: str = "tiny", seed: int = 0) -> BaseNetworks:
    """The pretrained G_real for `--base` (and D where the base file carries one)."""
    if base == "none":
        if network not in CONFIGS:
            raise DrfhqError(f"--network {network}: choose one of {', '.join(CONFIGS)}")
        torch.manual_seed(seed)
        return BaseNetworks(Generator(CONFIGS[network]).eval(), None, {"base": "none", "network": network, "seed": seed})
    if base == "mobilestylegan-ffhq":
        from .mobilestylegan import LICENCE, MobileStyleGAN

        g = MobileStyleGAN().eval()
        return BaseNetworks(g, None, {"base": base, "licence": LICENCE, "weights_sha256": g.weights_sha256})
    if base == "stylegan2-ffhq":
        from ..models.weights import resolve

        found = resolve("stylegan2-ffhq")
        nets = read_official(found.path)
        return BaseNetworks(nets.g_ema, nets.d, {"base": base, "file": str(found.path), "sha256": found.sha256,
                                                 "kind": nets.kind, **nets.notes})
    path = Path(base)
    if path.is_dir():
        return BaseNetworks(load_generator(path), None, {"base": str(path), "sha256": sha256_file(next(
            p for p in (path / "generator.safetensors", path / "generator.pt") if p.is_file()))})
    if path.is_file():
        nets = read_official(path)
        return BaseNetworks(nets.g_ema, nets.d, {"base": str(path), "sha256": sha256_file(path), "kind": nets.kind, **nets.notes})
    raise DrfhqError(f"--base {base}: not a file or folder, and not one of {', '.join(BASES)}")
