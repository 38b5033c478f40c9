"""Generator files: our format, NVIDIA network pickles (restricted unpickler), rosinality .pt files."""

import pickle
import subprocess
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch

from drfhq_tools.errors import DrfhqError
from drfhq_tools.gan.networks import (layer_swap, load_base, load_generator, load_official, read_official, save_generator,
                                     trainable_names)
from drfhq_tools.gan.stylegan2 import CONFIGS, Generator, StyleGAN2Config

from conftest import FIXTURES

CHECKPOINTS = FIXTURES.parent / "checkpoints"      # ../shared/checkpoints: files written by the official code
PEER = FIXTURES.parent / "peers" / "stylegan2-ada-pytorch"


def _generator(seed=0, cfg=CONFIGS["tiny"]):
    torch.manual_seed(seed)
    g = Generator(cfg).eval()
    with torch.no_grad():   # non-trivial noise strengths and w_avg, so every tensor matters
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
        g.mapping.w_avg.normal_()
    return g


def _images(g, seed=1):
    z = torch.from_numpy(np.random.default_rng(seed).standard_normal((3, g.z_dim)).astype(np.float32))
    with torch.no_grad():
        return g.synthesize(g.map(z, truncation_psi=0.7))


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_saved_and_loaded_generator_gives_bit_identical_images(tmp_path, fmt):
    g = _generator()
    save_generator(g, tmp_path / "g", extra={"note": "test"}, fmt=fmt)
    loaded = load_generator(tmp_path / "g")
    assert torch.equal(_images(g), _images(loaded))
    assert (tmp_path / "g" / f"generator.{'safetensors' if fmt == 'safetensors' else 'pt'}").is_file()


# ---------------------------------------------------------------- NVIDIA pickles

def _nvidia_pickle(g: Generator, extra_globals=None, augment_p: float | None = None) -> bytes:
    """A network pickle laid out as stylegan2-ada-pytorch writes it: persistent objects whose meta holds
    the class source (here a string that would raise if run) and the module's __dict__ state."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called while pickling")
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    package = types.ModuleType("torch_utils")
    package.persistence = persistence
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence")}
    sys.modules["torch_utils"], sys.modules["torch_utils.persistence"] = package, persistence

    class Persistent:
        def __init__(self, module, class_name, init_kwargs=None):
            self.module, self.class_name, self.init_kwargs = module, class_name, init_kwargs

        def __reduce__(self):
            params = OrderedDict((k, v.detach().clone()) for k, v in self.module._parameters.items())
            buffers = OrderedDict((k, v.clone()) for k, v in self.module._buffers.items())
            if self.class_name in ("SynthesisLayer", "SynthesisBlock", "Conv2dLayer"):
                buffers["resample_filter"] = torch.ones(4, 4) / 16      # NVIDIA keeps its FIR filter here
            state = {"_parameters": params, "_buffers": buffers, "training": False,
                     "_modules": OrderedDict((k, Persistent(m, type(m).__name__)) for k, m in self.module._modules.items())}
            if self.init_kwargs:
                state["_init_kwargs"] = self.init_kwargs
            meta = {"type": "class", "version": 4, "module_src": "raise SystemExit('source code was run')",
                    "class_name": self.class_name, "state": state}
            return _reconstruct_persistent_obj, (meta,)

    try:
        kwargs = {"z_dim": g.z_dim, "w_dim": g.w_dim, "img_resolution": g.img_resolution, "img_channels": 3,
                  "synthesis_kwargs": {"channel_base": g.cfg.channel_base, "channel_max": g.cfg.channel_max}}
        pipe = None
        if augment_p is not None:       # ADA's pipe: its probability is a buffer `p`
            module = torch.nn.Module()
            module.register_buffer("p", torch.tensor(augment_p))
            pipe = Persistent(module, "AugmentPipe", {"xflip": 1, "rotate90": 1})
        data = {"G": Persistent(g, "Generator", kwargs), "G_ema": Persistent(g, "Generator", kwargs),
                "training_set_kwargs": {"resolution": g.img_resolution}, "augment_pipe": pipe, **(extra_globals or {})}
        return pickle.dumps(data, protocol=4)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_nvidia_pickle_loads_and_generates_the_same_images(tmp_path):
    g = _generator(3)
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(_nvidia_pickle(g, augment_p=0.375))
    assert "torch_utils" not in sys.modules        # the reader needs none of NVIDIA's code
    assert read_official(path).notes["augment_pipe"] == {"p": 0.375, "kwargs": {"xflip": 1, "rotate90": 1}}
    loaded = load_official(path)
    assert loaded.cfg == g.cfg
    assert torch.equal(_images(g), _images(loaded))
    base = load_base(str(path))
    assert torch.equal(_images(g), _images(base.generator)) and len(base.info["sha256"]) == 64
    assert base.discriminator is None          # this pickle has no D


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(_nvidia_pickle(_generator(), extra_globals={"payload": _Evil(marker)}))
    with pytest.raises(DrfhqError, match="refused global (posix|os).system"):
        load_official(path)
    assert not marker.exists()


def test_rosinality_checkpoint_file_loads_and_generates_the_same_images(tmp_path):
    from test_stylegan2 import _rosinality_state   # the rosinality key layout, built from our generator

    g = _generator(5)
    torch.save({"g_ema": _rosinality_state(g), "latent_avg": g.mapping.w_avg.clone()}, tmp_path / "550000.pt")
    loaded = load_official(tmp_path / "550000.pt")
    assert loaded.cfg == g.cfg
    assert torch.equal(_images(g), _images(loaded))


def test_unknown_layouts_name_what_they_lack(tmp_path):
    torch.save({"generator": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(DrfhqError, match="unknown checkpoint layout.*generator"):
        load_official(tmp_path / "other.pt")
    state = dict(_generator().state_dict())
    state["mapping.embed.weight"] = torch.zeros(3, 3)          # a conditional model's extra layer
    g = _generator()
    from drfhq_tools.gan.stylegan2 import load_state
    with pytest.raises(DrfhqError, match="could not map.*mapping.embed.weight"):
        load_state(g, state, "cond.pkl")
    with pytest.raises(DrfhqError, match="not one of"):
        load_base("no-such-base")


def test_freezing_and_layer_swap_follow_resolution_groups():
    cfg = StyleGAN2Config(resolution=64, z_dim=32, w_dim=32, mapping_layers=2, channel_base=1024, channel_max=32)
    a, b = _generator(1, cfg), _generator(2, cfg)
    names = trainable_names(a, freeze_mapping=True, freeze_below=16)
    assert names and all(n.startswith(("synthesis.b16", "synthesis.b32", "synthesis.b64")) for n in names)
    swapped = layer_swap(a, b, 16)
    pa, pb, ps = dict(a.named_parameters()), dict(b.named_parameters()), dict(swapped.named_parameters())
    for name, group in swapped.parameter_groups().items():
        expected = pa if group == "mapping" or group < 16 else pb
        assert torch.equal(ps[name], expected[name]), name
    assert not torch.equal(_images(swapped), _images(a)) and not torch.equal(_images(swapped), _images(b))


def test_file_kind_is_read_from_content_not_name(tmp_path):
    from test_stylegan2 import _rosinality_state

    g = _generator(6)
    torch.save({"g_ema": _rosinality_state(g), "latent_avg": g.mapping.w_avg.clone()}, tmp_path / "stylegan2-ffhq.pkl")
    assert torch.equal(_images(g), _images(load_official(tmp_path / "stylegan2-ffhq.pkl")))
    (tmp_path / "net.pt").write_bytes(_nvidia_pickle(g))
    assert torch.equal(_images(g), _images(load_official(tmp_path / "net.pt")))


# ---------------------------------------------------------------- official files, official outputs

def _check_against(nets, expected, atol=1e-4):
    """Our G_ema's images for the file's z (truncation 1 and 0.7) and our D's logits on those images
    equal what the official code computed."""
    z = torch.from_numpy(expected["z"])
    g = nets.g_ema
    with torch.no_grad():
        img = g.synthesize(g.map(z))
        assert float((img - torch.from_numpy(expected["img"])).abs().max()) < atol
        if "img_psi07" in expected:
            img07 = g.synthesize(g.map(z, truncation_psi=0.7))
            assert float((img07 - torch.from_numpy(expected["img_psi07"])).abs().max()) < atol
        logits = nets.d(torch.from_numpy(expected["img"]))
        assert float((logits - torch.from_numpy(expected["d_logits"])).abs().max()) < atol


@pytest.mark.parametrize("name, expected", [("nvidia-ada-64-p3.pkl", "nvidia-ada-64-expected.npz"),
                                            ("nvidia-ada-64-p4.pkl", "nvidia-ada-64-expected.npz"),
                                            ("rosinality-64.pt", "rosinality-64-expected.npz")])
def test_official_files_give_the_official_images_and_logits(name, expected):
    nets = read_official(CHECKPOINTS / name)
    assert nets.d is not None and nets.g is not None
    data = np.load(CHECKPOINTS / expected)
    _check_against(nets, data)
    if "w" in data:       # rosinality's g_ema.style(z)
        with torch.no_grad():
            assert float((nets.g_ema.map(torch.from_numpy(data["z"])) - torch.from_numpy(data["w"])).abs().max()) < 1e-4
    if name.endswith(".pkl"):
        assert nets.g_ema.cfg.conv_clamp == 256 and nets.d.cfg.conv_clamp == 256
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules     # no code from the file ran


@pytest.fixture(scope="module")
def nvidia_made(tmp_path_factory):
    """Pickles of protocols 2-5 written by NVIDIA's own code (in a separate process, with the peer's
    modules importable there only), of nets with conv_clamp 0.5 and fp16 layers, and their outputs."""
    out = tmp_path_factory.mktemp("nvidia_made")
    done = subprocess.run([sys.executable, str(REFERENCE_SCRIPT), str(PEER), str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split("clamped:")[1]) > 0.05          # the clamp really is exercised
    return out


REFERENCE_SCRIPT = __import__("pathlib").Path(__file__).with_name("nvidia_reference.py")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_nvidia_pickles_of_every_protocol_with_conv_clamp_and_fp16_layers(nvidia_made, protocol):
    nets = read_official(nvidia_made / f"net-p{protocol}.pkl")
    assert nets.g_ema.cfg.conv_clamp == 0.5 and nets.g_ema.cfg.num_fp16_res == 2 and nets.d.mbstd_group == 2
    _check_against(nets, np.load(nvidia_made / "expected.npz"))
    assert "torch_utils" not in sys.modules


def test_mixed_precision_runs_nvidia_fp16_layers_in_reduced_precision(nvidia_made):
    """bf16 on the layers NVIDIA runs in fp16 stays close to the fp32 images; fp32 elsewhere."""
    nets = read_official(nvidia_made / "net-p4.pkl")
    expected = np.load(nvidia_made / "expected.npz")
    g, d = nets.g_ema, nets.d
    g.set_mixed_precision(torch.bfloat16)
    d.set_mixed_precision(torch.bfloat16)
    with torch.no_grad():
        img = g.synthesize(g.map(torch.from_numpy(expected["z"])))
        logits = d(img)
    assert img.dtype == torch.float32 and logits.dtype == torch.float32
    diff = float((img - torch.from_numpy(expected["img"])).abs().max())
    assert 0 < diff < 0.1, diff


def test_base_file_brings_its_discriminator():
    base = load_base(str(CHECKPOINTS / "nvidia-ada-64-p3.pkl"))
    assert base.discriminator is not None and base.discriminator.cfg.resolution == 64
    assert base.info["kind"] == "nvidia-pkl" and len(base.info["sha256"]) == 64
