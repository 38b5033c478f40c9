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
