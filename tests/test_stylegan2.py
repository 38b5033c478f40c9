"""StyleGAN2 generator and discriminator (tiny configuration on the CPU) and checkpoint layouts."""

import numpy as np
import pytest
import torch

from drfhq_tools.errors import DrfhqError
from drfhq_tools.gan.stylegan2 import CONFIGS, Discriminator, Generator, StyleGAN2Config, load_state, rosinality_to_nvidia


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return Generator(CONFIGS["tiny"]).eval()


def _z(g, n=2, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, g.z_dim)).astype(np.float32))


@pytest.mark.parametrize("resolution", [32, 64])
def test_generator_and_discriminator_shapes_and_gradients(resolution):
    cfg = StyleGAN2Config(resolution=resolution, z_dim=32, w_dim=32, mapping_layers=2, channel_base=1024, channel_max=32)
    g, d = Generator(cfg), Discriminator(cfg)
    images = g(torch.randn(4, 32))
    assert images.shape == (4, 3, resolution, resolution) and torch.isfinite(images).all()
    assert g.num_ws == 2 * (int(np.log2(resolution)) - 2) + 2
    logits = d(images)
    assert logits.shape == (4, 1)
    logits.sum().backward()
    assert g.synthesis.b4.const.grad is not None and g.mapping.fc0.weight.grad is not None


def test_w_plus_and_truncation(tiny):
    with torch.no_grad():
        w = tiny.map(_z(tiny))
        assert torch.allclose(tiny.synthesize(w), tiny.synthesize(w[:, None].repeat(1, tiny.num_ws, 1)))
        tiny.mapping.w_avg.copy_(w.mean(0))
        assert torch.allclose(tiny.map(_z(tiny), truncation_psi=0.0), w.mean(0).expand(2, -1))
    assert [tiny.style_resolution(i) for i in (0, 1, 2, tiny.num_ws - 1)] == [4, 4, 8, 32]


def test_an_official_layout_state_dict_loads_and_generates(tiny):
    # NVIDIA stylegan2-ada-pytorch G_ema keys are this module's own keys: build such a dict by hand
    official = {k: v.clone() for k, v in tiny.state_dict().items()}
    assert "synthesis.b32.conv0.affine.weight" in official and "mapping.fc1.bias" in official
    other = Generator(CONFIGS["tiny"])
    load_state(other, official, "official.pkl")
    with torch.no_grad():
        assert torch.equal(other(_z(tiny)), tiny(_z(tiny)))


def _rosinality_state(g: Generator) -> dict:
    """rosinality stylegan2-pytorch's g_ema keys and shapes, filled from one of our generators."""
    cfg = g.cfg
    s = g.state_dict()
    ros = {"input.input": s["synthesis.b4.const"][None]}
    for i in range(cfg.mapping_layers):
        ros[f"style.{i + 1}.weight"], ros[f"style.{i + 1}.bias"] = s[f"mapping.fc{i}.weight"], s[f"mapping.fc{i}.bias"]
    layers = [("conv1", "synthesis.b4.conv1", 4)]
    rgbs = [("to_rgb1", "synthesis.b4.torgb")]
    for k, res in enumerate(2 ** i for i in range(3, cfg.log2 + 1)):
        layers += [(f"convs.{2 * k}", f"synthesis.b{res}.conv0", res), (f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", res)]
        rgbs.append((f"to_rgbs.{k}", f"synthesis.b{res}.torgb"))
    for n, (src, dst, res) in enumerate(layers):
        ros[f"{src}.conv.weight"] = s[f"{dst}.weight"][None]
        ros[f"{src}.conv.modulation.weight"], ros[f"{src}.conv.modulation.bias"] = s[f"{dst}.affine.weight"], s[f"{dst}.affine.bias"]
        ros[f"{src}.activate.bias"] = s[f"{dst}.bias"]
        ros[f"{src}.noise.weight"] = s[f"{dst}.noise_strength"].reshape(1)
        ros[f"noises.noise_{n}"] = s[f"{dst}.noise_const"].reshape(1, 1, res, res)
    for src, dst in rgbs:
        ros[f"{src}.conv.weight"] = s[f"{dst}.weight"][None]
        ros[f"{src}.conv.modulation.weight"], ros[f"{src}.conv.modulation.bias"] = s[f"{dst}.affine.weight"], s[f"{dst}.affine.bias"]
        ros[f"{src}.bias"] = s[f"{dst}.bias"].reshape(1, 3, 1, 1)
    return ros


def test_a_rosinality_checkpoint_converts(tiny):
    cfg = CONFIGS["tiny"]
    ros = {**_rosinality_state(tiny), "latent_avg": tiny.state_dict()["mapping.w_avg"]}
    converted = Generator(cfg)
    load_state(converted, rosinality_to_nvidia(ros, cfg), "rosinality.pt")
    with torch.no_grad():
        assert torch.equal(converted(_z(tiny)), tiny(_z(tiny)))


def test_an_unknown_layout_names_the_keys_it_could_not_map(tiny):
    state = dict(tiny.state_dict())
    state["encoder.fc.weight"] = torch.zeros(3)
    del state["mapping.fc0.weight"]
    with pytest.raises(DrfhqError) as info:
        load_state(Generator(CONFIGS["tiny"]), state, "mystery.pt")
    assert "encoder.fc.weight" in str(info.value) and "mapping.fc0.weight" in str(info.value)


def test_resampling_equals_nvidias_reference_path():
    from reference_stylegan2 import conv2d_resample_ref, setup_filter, upfirdn2d_ref

    from drfhq_tools.gan.stylegan2 import modulated_conv2d, upsample2x

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 8, 8, generator=gen)
    weight = torch.randn(7, 5, 3, 3, generator=gen)
    styles = torch.randn(2, 5, generator=gen)
    f = setup_filter()
    # the skip generator's RGB upsampling: upfirdn2d.upsample2d(img, f)
    assert torch.allclose(upsample2x(x), upfirdn2d_ref(x, f, up=2, padding=[2, 1, 2, 1], gain=4), atol=1e-6)
    for up in (False, True):
        ours = modulated_conv2d(x, weight, styles, demodulate=True, up=up)
        # NVIDIA's fused modulated convolution: one grouped conv2d_resample, flip_weight=(up == 1)
        w = weight[None] * styles[:, None, :, None, None]
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        ref = conv2d_resample_ref(x.reshape(1, -1, 8, 8), w.reshape(-1, 5, 3, 3), f, up=2 if up else 1, padding=1,
                                  groups=2, flip_weight=not up).reshape(2, 7, *ours.shape[2:])
        assert ours.shape == ref.shape == (2, 7, 16 if up else 8, 16 if up else 8)
        assert torch.allclose(ours, ref, atol=1e-5), float((ours - ref).abs().max())


def test_the_resampling_filter_has_every_derivative_and_no_per_channel_double_backward():
    """R1 takes D's gradient through its downsampling filter and then differentiates it again. The
    filter's first and second derivatives equal those of the plain depthwise convolution, and the double
    backward runs a few convolutions, not one per channel (autograd's own double backward of a grouped
    convolution loops over groups: 25x slower R1 than NVIDIA's on an H100)."""
    import torch.nn.functional as F
    from torch.utils._python_dispatch import TorchDispatchMode

    from drfhq_tools.gan.stylegan2 import _kernel, fir_filter

    def plain(x, pad, down, gain):
        return F.conv2d(F.pad(x, (pad,) * 4), _kernel(x, gain).expand(x.shape[1], 1, 4, 4), stride=down, groups=x.shape[1])

    gen = torch.Generator().manual_seed(0)
    for pad, down, gain, side in [(1, 2, 1.0, 8), (1, 2, 1.0, 9), (2, 1, 4.0, 7), (3, 2, 1.0, 6)]:
        x = torch.randn(2, 3, side, side, generator=gen, dtype=torch.float64, requires_grad=True)
        ours = lambda v: fir_filter(v, pad, down, gain)
        assert torch.equal(ours(x), plain(x, pad, down, gain))
        assert torch.autograd.gradcheck(ours, (x,)) and torch.autograd.gradgradcheck(ours, (x,))
        grads = [torch.autograd.grad(f(x).sin().sum(), x, create_graph=True)[0] for f in (ours, lambda v: plain(v, pad, down, gain))]
        assert torch.allclose(grads[0], grads[1])
        second = [torch.autograd.grad(g.square().sum(), x)[0] for g in grads]
        assert torch.allclose(second[0], second[1])

    class CountConvolutions(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += func.overloadpacket in (torch.ops.aten.convolution, torch.ops.aten.convolution_backward)
            return func(*args, **(kwargs or {}))

    def r1_convolutions(filter_fn) -> int:
        x = torch.randn(2, 64, 16, 16, generator=gen, requires_grad=True)
        with CountConvolutions() as counter:
            (grad,) = torch.autograd.grad(filter_fn(x).square().sum(), x, create_graph=True)
            grad.square().sum().backward()
        return counter.calls

    assert r1_convolutions(lambda v: plain(v, 1, 2, 1.0)) >= 64        # what autograd does by itself
    assert r1_convolutions(lambda v: fir_filter(v, 1, 2)) <= 4
