"""FFHQ alignment: geometry, agreement with the NVlabs procedure, and where the eyes land."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from drfhq_tools.dataset.align import align_face
from drfhq_tools.dataset.align_geometry import (apply_affine, canonical_eye_positions, ffhq_quad,
                                                head_pose_from_landmarks, quad_to_output_affine)
from drfhq_tools.dataset.decode import decode_image
from drfhq_tools.models import faces
from reference_ffhq import psnr, reference_align


def _synthetic_landmarks(eye_dist=60.0, mouth_drop=70.0, centre=(200.0, 220.0), angle_deg=0.0):
    lm = np.zeros((68, 2))
    cx, cy = centre
    lm[36:42] = (cx - eye_dist / 2, cy)
    lm[42:48] = (cx + eye_dist / 2, cy)
    lm[48] = (cx - 25, cy + mouth_drop)
    lm[54] = (cx + 25, cy + mouth_drop)
    lm[0], lm[16], lm[30] = (cx - 70, cy + 10), (cx + 70, cy + 10), (cx, cy + 35)
    t = np.radians(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (lm - centre) @ rot.T + centre


def test_quad_is_a_square_centred_between_eyes_and_mouth():
    lm = _synthetic_landmarks()
    quad, qsize = ffhq_quad(lm)
    sides = [np.linalg.norm(quad[i] - quad[(i + 1) % 4]) for i in range(4)]
    assert np.allclose(sides, qsize)
    # x is max(2 * eye distance, 1.8 * eye-to-mouth): here 1.8 * 70 = 126 > 120, so the side is 252
    assert qsize == pytest.approx(2 * 1.8 * 70)
    assert quad.mean(axis=0) == pytest.approx([200, 220 + 0.1 * 70])


def test_affine_maps_quad_corners_to_output_corners_and_undoes_roll():
    lm = _synthetic_landmarks(angle_deg=17)
    quad, _ = ffhq_quad(lm)
    m = quad_to_output_affine(quad, 1024)
    assert apply_affine(m, quad) == pytest.approx(np.array([[0, 0], [0, 1024], [1024, 1024], [1024, 0]]), abs=1e-6)
    eyes = canonical_eye_positions(lm, 1024)
    assert eyes[0, 1] == pytest.approx(eyes[1, 1], abs=1e-6)          # eye line horizontal
    assert eyes.mean(axis=0)[0] == pytest.approx(512, abs=1e-6)       # centred
    assert head_pose_from_landmarks(lm)[1] == pytest.approx(17, abs=1e-6)


def test_yaw_sign_and_frontal_zero():
    lm = _synthetic_landmarks()
    assert head_pose_from_landmarks(lm)[0] == pytest.approx(0, abs=1e-6)
    lm[30, 0] += 30   # nose towards the image's right: the face turns to its own left
    assert head_pose_from_landmarks(lm)[0] < -20


def _landmarks_of(rgb):
    found = faces.detect_faces(rgb)
    assert found, "no face"
    return faces.landmarks(rgb, max(found, key=lambda f: f.area).box)


SAMPLES = ["real/frl_canada/003f.jpg", "real/frl_canada/008f.jpg", "real/frl_lisa_cc0/lisa_lisa1.jpg",
           "real/frl_lisa_cc0/zoom_15cm.jpg", "real/astronaut.png", "render/makehuman_expressions_cc0/anger01.png"]


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("size", [256, 1024])
def test_matches_the_nvlabs_procedure(fixtures, name, size):
    rgb = decode_image(fixtures / name).rgb
    lm = _landmarks_of(rgb)
    ours = align_face(rgb, lm, size).image
    reference = reference_align(rgb, lm, size)
    assert ours.shape == reference.shape == (size, size, 3)
    assert psnr(ours, reference) > 42.0


@pytest.mark.parametrize("name", SAMPLES[:5])
def test_eyes_land_at_canonical_positions_at_1024(fixtures, name):
    rgb = decode_image(fixtures / name).rgb
    lm = _landmarks_of(rgb)
    aligned = align_face(rgb, lm, 1024).image
    expected = canonical_eye_positions(lm, 1024) - 0.5     # continuous -> pixel-centre coordinates
    redetected = _landmarks_of(aligned)
    found = np.stack([redetected[36:42].mean(axis=0), redetected[42:48].mean(axis=0)])
    assert np.abs(found - expected).max() < 6.0
    # FFHQ's frame (its axis blends the eye line and the eye-to-mouth line): eyes near level and
    # centred, above the middle, eye distance at most a quarter of the image
    assert abs(expected[0, 1] - expected[1, 1]) < 4.0
    assert abs(expected[:, 0].mean() - 511.5) < 4.0
    assert 440 < expected[:, 1].mean() < 500
    assert 150 < expected[1, 0] - expected[0, 0] <= 256 + 1e-6


def test_every_real_photo_and_makehuman_render_is_aligned(fixture_dataset, fixtures):
    manifest = pq.read_table(fixture_dataset / "manifest.parquet").to_pandas()
    wanted = manifest[manifest.source_path.str.startswith(("real/", "render/makehuman"))]
    assert len(wanted) == 40 + 8 + 1 + 32
    assert (wanted.reject_reason.isna()).all(), wanted[wanted.reject_reason.notna()][["source_path", "reject_reason"]]
    assert wanted.image_path.notna().all()
    for rel in wanted.image_path.head(5):
        assert decode_image(fixture_dataset / rel).rgb.shape == (256, 256, 3)


def test_non_face_photos_are_rejected_as_no_face(fixture_dataset):
    manifest = pq.read_table(fixture_dataset / "manifest.parquet").to_pandas()
    nonface = manifest[manifest.source_path.str.startswith("nonface/")]
    assert len(nonface) == 6
    assert (nonface.status == "rejected").all() and (nonface.reject_reason == "no_face").all()
