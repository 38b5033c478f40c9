"""dlib's face descriptor network rebuilt in torch equals dlib's own on the same chips."""

import dlib
import numpy as np
import pytest
import torch
from PIL import Image

from drfhq_tools.errors import DrfhqError
from drfhq_tools.models import faces
from drfhq_tools.models.dlib_resnet import DlibFaceResNet, _pad_add, read_dlib_resnet
from drfhq_tools.models.weights import resolve


def _chips(paths):
    chips = []
    for p in paths:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        box = max(faces.detect_faces(rgb, "hog+cnn"), key=lambda f: f.area).box
        lm = faces.landmarks(rgb, box, 5)
        shape = dlib.full_object_detection(dlib.rectangle(*[int(v) for v in box]),
                                           dlib.points([dlib.point(int(x), int(y)) for x, y in lm]))
        chips.append(np.asarray(dlib.get_face_chip(rgb, shape, 150, 0.25)))
    return np.stack(chips)


def test_torch_descriptor_equals_dlib_on_fixture_faces(fixtures):
    paths = (sorted((fixtures / "real/frl_canada").glob("*.jpg"))[:6] + sorted((fixtures / "real/frl_lisa_cc0").glob("*.jpg"))[:3]
             + sorted((fixtures / "render/makehuman_expressions_cc0").glob("*.png"))[:3])
    chips = _chips(paths)
    path = resolve("dlib-face-descriptor").path
    reference = np.asarray(dlib.face_recognition_model_v1(str(path)).compute_face_descriptor(list(chips)))
    net = DlibFaceResNet.from_dlib_file(path)
    with torch.no_grad():
        ours = net(torch.from_numpy(chips).permute(0, 3, 1, 2).float()).numpy()
    assert ours.shape == (len(paths), 128)
    assert np.abs(ours - reference).max() < 1e-5
    # differentiable: a gradient reaches the pixels
    x = torch.from_numpy(chips[:1]).permute(0, 3, 1, 2).float().requires_grad_(True)
    net(x).norm().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_zero_padded_residual_addition():
    a = torch.ones(1, 4, 3, 3)
    b = torch.full((1, 2, 4, 4), 2.0)
    out = _pad_add(a, b)
    assert out.shape == (1, 4, 4, 4)
    assert out[0, 0, 0, 0] == 3 and out[0, 3, 0, 0] == 1 and out[0, 0, 3, 3] == 2 and out[0, 3, 3, 3] == 0


def test_a_file_of_another_network_is_refused(tmp_path):
    other = tmp_path / "other.dat"
    other.write_bytes(resolve("dlib-landmarks-5").path.read_bytes()[:200000])
    with pytest.raises(DrfhqError, match="no tensor of shape"):
        read_dlib_resnet(other)


def test_bench_identity_extractors_agree(fixture_dataset):
    from drfhq_tools.bench.run import dataset_rows
    from drfhq_tools.models.identity import identity_network

    rows = dataset_rows(fixture_dataset, 10)[0]
    images = [np.asarray(Image.open(r["image_file"]).convert("RGB")) for r in rows]
    native = identity_network("dlib")(images, [r["aligned_lm5"] for r in rows])
    ported = identity_network("dlib-torch")
    assert ported.name != identity_network("dlib").name      # rows record which implementation made them
    assert np.abs(ported(images, [r["aligned_lm5"] for r in rows]) - native).max() < 1e-5


def test_torch_chips_match_dlib_chips_and_carry_gradients(fixtures):
    from drfhq_tools.models.chips import chip_matrix, extract_chips
    from drfhq_tools.models.identity import DlibIdentity

    dlib_id = DlibIdentity()
    net = DlibFaceResNet.from_dlib_file(resolve("dlib-face-descriptor").path)
    paths = sorted((fixtures / "real/frl_canada").glob("*.jpg"))[:3]
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        box = max(faces.detect_faces(rgb, "hog+cnn"), key=lambda f: f.area).box
        lm = faces.landmarks(rgb, box, 5)
        reference = dlib_id.chips([rgb], [lm])[0].astype(np.float32)
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().requires_grad_(True)
        chip = extract_chips(image, torch.from_numpy(chip_matrix(lm)))
        # same geometry: what is left is dlib's rounding to uint8
        assert np.abs(chip[0].detach().permute(1, 2, 0).numpy() - reference).mean() < 0.75
        net(chip).sum().backward()
        assert image.grad.abs().sum() > 0
        # a 4x larger image (box-filtered before sampling) gives nearly the same descriptor
        big = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] * 4, rgb.shape[0] * 4), Image.BICUBIC))
        with torch.no_grad():
            d_big = net(extract_chips(torch.from_numpy(big.copy()).permute(2, 0, 1)[None].float(),
                                      torch.from_numpy(chip_matrix(lm * 4 + 1.5))))
        d_dlib = np.asarray(dlib_id([rgb], [lm])[0])
        assert np.linalg.norm(d_big.numpy()[0] - d_dlib) < 0.05


def test_chip_geometry_in_numpy_equals_dlibs():
    """chip_matrix reimplements get_face_chip_details (so training needs no dlib); dlib's own answer,
    turned into the same matrix, must agree for faces of any size, angle and place."""
    import math

    import dlib

    from drfhq_tools.models.chips import chip_matrix
    from drfhq_tools.models.identity import similarity_transform

    def dlib_matrix(lm, size, padding):
        box = dlib.rectangle(*(int(round(v)) for v in (*lm.min(0), *(lm.max(0) + 1))))
        parts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in lm])
        d = dlib.get_face_chip_details(dlib.full_object_detection(box, parts), size, padding)
        r = d.rect
        corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()]])
        centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
        c, s = math.cos(d.angle), math.sin(d.angle)
        rotated = (corners - centre) @ np.array([[c, s], [-s, c]]) + centre
        return similarity_transform(np.array([[0, 0], [d.cols - 1, 0], [d.cols - 1, d.rows - 1]], float), rotated)

    rng = np.random.default_rng(0)
    template = np.array([[160, 100], [130, 102], [60, 100], [90, 102], [110, 150]], float)
    for _ in range(200):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.3, 6)
        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        lm = template @ turn.T * scale + rng.uniform(-50, 500, 2) + rng.normal(0, 3 * scale, (5, 2))
        for size, padding in ((150, 0.25), (200, 0.2)):
            assert np.abs(chip_matrix(lm, size, padding) - dlib_matrix(lm, size, padding)).max() < 1e-9
