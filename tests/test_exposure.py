"""Exposure of inversion targets (`gan.exposure`): pure functions on image tensors."""

import numpy as np
import torch
from PIL import Image

from drfhq_tools.gan import exposure as E


def _face(fixtures, name="aligned_gan/sample_r00c00.jpg", scale=1.0):
    rgb = np.asarray(Image.open(fixtures / name).convert("RGB").resize((128, 128))).astype(np.float32) / 255
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None] * 2 - 1
    return E.scale_exposure(x, torch.tensor([scale])) if scale != 1 else x


def test_srgb_transfer_functions_invert_each_other():
    x = torch.linspace(0, 1, 1001)
    assert torch.allclose(E.linear_to_srgb(E.srgb_to_linear(x)), x, atol=1e-6)
    assert abs(float(E.srgb_to_linear(torch.tensor(0.5))) - 0.2140) < 1e-4       # the standard's mid grey
    # one curve for torch (exposure) and numpy (bench's CIELAB): the same values, each kind given back as it came
    from drfhq_tools.colour import linear_to_srgb, srgb_to_linear

    for curve in (srgb_to_linear, linear_to_srgb):
        on_numpy = curve(x.double().numpy())
        assert isinstance(on_numpy, np.ndarray) and np.allclose(on_numpy, curve(x.double()).numpy(), rtol=0, atol=1e-12)
    assert np.allclose(srgb_to_linear(np.array([0.0, 0.04045, 1.0])), [0.0, 0.04045 / 12.92, 1.0])


def test_a_dark_face_is_lifted_to_the_floor_and_a_bright_one_is_left_alone(fixtures):
    bright = _face(fixtures)
    dark = _face(fixtures, scale=1 / 20)          # the same face 4.3 stops down: a render lit for a dark scene
    assert float(E.inner_face_mean(dark)) < 0.15 < 0.3 < float(E.inner_face_mean(bright))
    gains = E.exposure_gains(torch.cat([dark, bright]), floor=0.3)
    assert gains[1] == 1.0 and 4 < gains[0] < 20     # up to the floor, not back to where it was (0.5)
    lifted = E.scale_exposure(dark, gains[:1])
    assert abs(float(E.inner_face_mean(lifted)) - 0.3) < 1e-3
    assert torch.equal(E.exposure_gains(dark, floor=0.0), torch.ones(1))       # 0: off


def test_lifting_and_giving_back_the_exposure_returns_the_render(fixtures):
    dark = _face(fixtures, scale=1 / 8)
    gain = E.exposure_gains(dark, floor=0.3)
    back = E.scale_exposure(E.scale_exposure(dark, gain), 1 / gain)
    face = (slice(None), slice(None), slice(32, 104), slice(32, 96))
    assert (back - dark)[face].abs().mean() < 0.01            # only what the lift clipped at white differs


def test_the_gain_is_bounded_on_a_black_image():
    black = -torch.ones(1, 3, 64, 64)
    assert float(E.exposure_gains(black, floor=0.3)[0]) <= E.MAX_GAIN
