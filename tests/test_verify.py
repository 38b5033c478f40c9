"""Near-duplicate verification: a copy seen through crop, resize, rotation, re-encoding and a colour
change registers onto its original; a local change (another expression) or another photo does not."""

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from drfhq_tools.dataset.align_geometry import head_pitch_ratio
from drfhq_tools.dataset.verify import (RESIDUAL_THRESHOLD, compare_pictures, descriptor_vectors, pose_gap,
                                        similarity_from_points, thumbnail_descriptor)
from drfhq_tools.models import faces


def _landmarks(img: Image.Image) -> np.ndarray:
    rgb = np.asarray(img.convert("RGB"))
    box = max(faces.detect_faces(rgb, "hog+cnn"), key=lambda f: f.area).box
    return faces.landmarks(rgb, box, 68)


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.fixture(scope="module")
def photo(fixtures):
    img = Image.open(fixtures / "real/frl_canada/003f.jpg").convert("RGB")
    return img, _landmarks(img)


def test_a_planted_copy_registers_and_its_transform_is_recovered(photo):
    img, lm = photo
    w, h = img.size
    angle, crop, factor = 2.5, (14, 9, 10, 20), 0.6
    copy = img.rotate(angle, resample=Image.BICUBIC, fillcolor=(0, 0, 0)).crop((crop[0], crop[1], w - crop[2], h - crop[3]))
    copy = copy.resize((round(copy.width * factor), round(copy.height * factor)), Image.LANCZOS)
    copy = _jpeg(ImageEnhance.Brightness(copy).enhance(1.12), 55)
    check = compare_pictures(img, copy, lm, _landmarks(copy))
    assert check.same_picture() and check.score < RESIDUAL_THRESHOLD
    # +15% brightness saturates the red of a third of this face: clipped pixels are left out, not counted
    brighter = ImageEnhance.Brightness(img).enhance(1.15)
    assert (np.asarray(brighter)[..., 0] >= 253).mean() > 0.2
    assert compare_pictures(img, brighter, lm, _landmarks(brighter)).score < 0.2
    # PIL rotates counter-clockwise about the centre: where a point of the original lands in the copy
    theta = np.radians(angle)
    centre = np.array([w / 2, h / 2])
    rot = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    expected = ((lm - centre) @ rot.T + centre - np.array(crop[:2])) * factor
    got = lm @ check.transform[:, :2].T + check.transform[:, 2]
    face_side = np.ptp(lm[:, 0])
    assert np.abs(got - expected).max() < 0.02 * face_side * factor


def test_a_local_change_or_another_photo_is_not_the_same_picture(photo, fixtures):
    img, lm = photo
    changed = np.asarray(img).copy()
    mouth = lm[48:68].astype(int)
    x0, y0 = mouth.min(0) - 4
    x1, y1 = mouth.max(0) + 4
    changed[y0:y1, x0:x1] = changed[y0:y1, x0:x1][::-1]          # the mouth upside down: a new expression
    changed = Image.fromarray(changed)
    check = compare_pictures(img, changed, lm, lm)
    assert not check.same_picture() and check.face > check.whole
    other = Image.open(fixtures / "real/frl_canada/008f.jpg").convert("RGB")
    full = compare_pictures(img, other, lm, _landmarks(other))
    assert not full.same_picture()
    quick = compare_pictures(img, other, lm, _landmarks(other), stop_above=RESIDUAL_THRESHOLD)
    assert np.isnan(quick.face) and quick.whole == full.whole and not quick.same_picture()
    # a copy of the changed picture is still a copy of it
    again = _jpeg(changed.resize((changed.width * 3 // 4, changed.height * 3 // 4), Image.LANCZOS), 70)
    assert compare_pictures(changed, again, lm, _landmarks(again)).same_picture()
    assert compare_pictures(changed.convert("L"), again.convert("L"), lm, _landmarks(again)).same_picture()   # grey pictures too


def test_descriptor_pose_guard_and_points(photo):
    img, lm = photo
    a = descriptor_vectors(np.frombuffer(thumbnail_descriptor(np.asarray(img)), np.int8)[None])[0]
    darker = np.asarray(ImageEnhance.Brightness(img).enhance(0.85).resize((200, 267)))
    b = descriptor_vectors(np.frombuffer(thumbnail_descriptor(darker), np.int8)[None])[0]
    assert abs(np.linalg.norm(a) - 1) < 1e-5 and a @ b > 0.97
    assert pose_gap(lm, lm) is None

    def turned(f, side):          # one half of the face squashed towards the nose: the head turns that way
        out, nose = lm.copy(), lm[30, 0]
        half = lm[:, 0] > nose if side > 0 else lm[:, 0] < nose
        out[half, 0] = nose + (lm[half, 0] - nose) * f
        return out

    assert "opposite" in pose_gap(turned(0.2, 1), turned(0.2, -1))          # about -44 vs +40 degrees
    assert pose_gap(turned(0.5, 1), turned(0.5, -1)) is None                  # -22 vs +17: the registration decides
    assert pose_gap(lm, turned(0.2, 1)) is None                               # landmark yaw alone is too noisy
    lowered = lm.copy()
    lowered[27:36, 1] += 0.3 * (lm[8, 1] - lm[27, 1])                         # the nose far down: head tilted
    assert "pitch" in pose_gap(lm, lowered)
    assert 0.15 < head_pitch_ratio(lm) < 0.45
    m = np.array([[0.9, -0.2, 5.0], [0.2, 0.9, -3.0]])
    assert np.allclose(similarity_from_points(lm, lm @ m[:, :2].T + m[:, 2]), m)


def test_the_build_comparer_spreads_checks_over_processes_with_equal_answers(photo, fixtures, tmp_path, monkeypatch):
    from drfhq_tools.dataset import build
    from drfhq_tools.dataset.build import PictureComparer

    monkeypatch.setattr(build, "PARALLEL_CHECKS", 8)

    img, lm = photo
    img.save(tmp_path / "a.png")
    copy = _jpeg(img.resize((img.width * 2 // 3, img.height * 2 // 3), Image.LANCZOS), 60)
    copy.save(tmp_path / "copy.png")
    other = Image.open(fixtures / "real/frl_canada/008f.jpg").convert("RGB")
    other.save(tmp_path / "other.png")
    marks = {"a.png": lm, "copy.png": _landmarks(copy), "other.png": _landmarks(other)}
    pairs = [("a.png", "copy.png"), ("a.png", "other.png"), ("copy.png", "other.png"), ("a.png", "gone.png")]
    tasks = [(a, marks[a], b, marks.get(b, lm)) for k in range(2) for a, b in pairs]
    serial = PictureComparer(tmp_path, "black", 10 ** 8, workers=1)
    parallel = PictureComparer(tmp_path, "black", 10 ** 8, workers=2)
    expected = serial(tasks)
    assert [same for same, _ in expected[:4]] == [True, False, False, False]
    assert parallel(tasks) == expected
    assert serial.counts == parallel.counts and parallel.counts["unreadable"] == len(tasks) // 4
    assert parallel.counts["same_picture"] == len(tasks) // 4
