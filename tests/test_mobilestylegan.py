"""MobileStyleGAN in torch (an interpreter of the random-face package's OpenVINO IR) equals OpenVINO."""

import numpy as np
import pytest
import torch

from drfhq_tools.gan.mobilestylegan import MobileStyleGAN
from drfhq_tools.render.sample_real import MobileStyleGanOpenVino


@pytest.fixture(scope="module")
def generator():
    return MobileStyleGAN()


def test_images_equal_openvino_f32_for_fixed_w(generator):
    reference = MobileStyleGanOpenVino()
    z = np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
    w_ov = reference.map(z)
    with torch.no_grad():
        w = generator.map(torch.from_numpy(z))
        image = generator.synthesize(torch.from_numpy(w_ov))[0].numpy()
    assert np.abs(w.numpy() - w_ov).max() < 1e-4
    assert image.shape == (3, 1024, 1024)
    assert np.abs(image - reference.synthesize(w_ov)).max() < 1e-3


def test_w_plus_styles_and_layers_by_name(generator):
    assert generator.num_ws == 23
    assert generator.style_names[0].startswith("m.conv1") and generator.style_names[-1].startswith("m.layers.6.to_img")
    assert [generator.style_resolution(i) for i in (0, 1, 22)] == [4, 8, 512]
    names = dict(generator.synthesis.named_parameters())
    assert sum(p.numel() for p in names.values()) > 7_000_000
    z = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 512)).astype(np.float32))
    with torch.no_grad():
        w = generator.map(z)
        same = generator.synthesize(w[:, None].repeat(1, 23, 1))
        plain = generator.synthesize(w)
        mixed = w[:, None].repeat(1, 23, 1).clone()
        mixed[:, 12:] = generator.map(-z)
        other = generator.synthesize(mixed)
    assert torch.equal(same, plain)
    assert (other - plain).abs().mean() > 1e-3


def test_parameter_groups_place_every_learned_weight_at_its_resolution(generator):
    groups = generator.parameter_groups()
    assert set(groups.values()) == {"mapping", 4, 8, 16, 32, 64, 128, 256, 512, 1024}
    # the style affines sit at the resolution their W+ index drives
    for index, lid in enumerate(generator.style_layers):
        weight = generator.synthesis.inputs_of[lid][1][1]
        assert groups[f"synthesis.{generator.synthesis.param_names[weight]}"] == generator.style_resolution(index)
    frozen = set(dict(generator.named_parameters())) - set(groups)
    kernels = {f"synthesis.{key}" for lid, key in generator.synthesis.param_names.items()
               if any(generator.synthesis.layers[c]["type"] == "GroupConvolutionBackpropData"
                      for c, ins in generator.synthesis.inputs_of.items() if any(src == lid for _, src, _ in ins))}
    assert kernels and kernels <= frozen          # the inverse-Haar kernels are never trained
    assert len(frozen) > len(kernels)             # nor the noise maps and scalar constants


def test_transfer_training_and_layer_swap_accept_mobilestylegan(generator, fixture_dataset, tmp_path):
    from drfhq_tools.gan.networks import layer_swap
    from drfhq_tools.gan.train import TrainConfig, Trainer

    cfg = TrainConfig(dataset=str(fixture_dataset), out=str(tmp_path / "run"), base="mobilestylegan-ffhq", network="tiny",
                      resolution=64, batch=2, mbstd_group=2, limit=8, freeze_below=8, workers=0)
    trainer = Trainer(cfg, generator, {"base": "mobilestylegan-ffhq"})
    before = {n: p.detach().clone() for n, p in trainer.g_render.named_parameters()}
    row = trainer.step()
    assert all(np.isfinite(row[k]) for k in ("adversarial", "identity", "colour", "geometry", "d_loss"))
    after = dict(trainer.g_render.named_parameters())
    trained = set(trainer.train_names)
    assert trained and all(generator.parameter_groups()[n] != 4 for n in trained)
    assert all(torch.equal(before[n], after[n]) for n in before if n not in trained)       # frozen stay put
    assert sum(not torch.equal(before[n], after[n]) for n in trained) > 0.9 * len(trained)
    swapped = layer_swap(trainer.g_render, generator, 64)
    ps, pr = dict(swapped.named_parameters()), dict(generator.named_parameters())
    for name, group in generator.parameter_groups().items():
        source = after if group == "mapping" or group < 64 else pr
        assert torch.equal(ps[name], source[name]), name
