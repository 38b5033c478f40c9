"""`drfhq enhance`: faces found in whole images, translated, pasted back; paste-back geometry."""

import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from drfhq_tools.dataset import paste as P
from drfhq_tools.dataset.align import align_face
from drfhq_tools.dataset.align_geometry import apply_affine
from drfhq_tools.dataset.decode import decode_image
from drfhq_tools.errors import DrfhqError
from drfhq_tools.gan.enhance import EnhanceConfig, enhance
from drfhq_tools.models import faces


class IdentityTranslator:
    """Returns each aligned crop unchanged: a paste-back must then give the input back."""

    def __init__(self, size=256, fail_after=None):
        self.size, self.key, self.calls, self.fail_after = size, f"identity-{size}", 0, fail_after

    def __call__(self, crops, ids):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("translator stopped (simulated crash)")
        return [c.copy() for c in crops], [{} for _ in crops]


def psnr(a, b, where):
    err = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[where].mean()
    return 10 * np.log10(255.0 ** 2 / max(err, 1e-12))


@pytest.fixture(scope="module")
def mixed(fixtures, tmp_path_factory):
    """Two faces in one image, a render with alpha in a subfolder, no face, a too-small face, broken files."""
    src = tmp_path_factory.mktemp("mixed")
    a = Image.open(fixtures / "real/frl_canada/003f.jpg").convert("RGB")
    b = Image.open(fixtures / "real/frl_canada/008f.jpg").convert("RGB")
    two = Image.new("RGB", (a.width + b.width, max(a.height, b.height)))
    two.paste(a, (0, 0))
    two.paste(b, (a.width, 0))
    two.save(src / "two.png")
    shutil.copy(fixtures / "nonface/butterfly-142506_640.jpg", src / "butterfly.jpg")
    a.resize((60, 80)).save(src / "tiny.png")
    (src / "broken.jpg").write_bytes((fixtures / "real/frl_canada/003f.jpg").read_bytes()[:800])
    (src / "notes.png").write_text("not an image")
    (src / "sub").mkdir()
    shutil.copy(fixtures / "render/makehuman_expressions_cc0/anger01.png", src / "sub/anger01.png")
    return src


def _rows(out):
    return pq.read_table(out / "enhance.parquet").to_pylist()


def test_every_face_is_handled_and_every_image_has_its_reason(mixed, tmp_path):
    out = tmp_path / "out"
    enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(out)), IdentityTranslator(), log=lambda *a: None)
    rows = _rows(out)
    by_image = {}
    for r in rows:
        by_image.setdefault(r["image"], []).append(r)
    two = sorted(by_image["two.png"], key=lambda r: r["face"])
    assert [(r["face"], r["status"]) for r in two] == [(0, "enhanced"), (1, "enhanced")]
    assert two[0]["box"][0] < 384 <= two[1]["box"][0]                          # one face in each half
    assert [(r["face"], r["status"]) for r in by_image["sub/anger01.png"]] == [(0, "enhanced")]
    assert [(r["status"], r["reason"]) for r in by_image["butterfly.jpg"]] == [("unchanged", "no face found")]
    tiny = {r["face"]: r for r in by_image["tiny.png"]}
    assert tiny[0]["status"] == "skipped" and "too small" in tiny[0]["reason"] and "--min-face-px 96" in tiny[0]["reason"]
    assert tiny[None]["status"] == "unchanged" and "no usable face" in tiny[None]["reason"]
    for bad in ("broken.jpg", "notes.png"):
        (row,) = by_image[bad]
        assert row["status"] == "failed" and row["reason"].startswith("cannot read") and row["output"] is None
    assert "truncated" in by_image["broken.jpg"][0]["reason"] and "not_an_image" in by_image["notes.png"][0]["reason"]
    # an identity translation gives every readable image back, pixel for pixel (alpha composited as decoded)
    for rel in ("two.png", "sub/anger01.png", "butterfly.jpg", "tiny.png"):
        written = np.asarray(Image.open(out / "images" / rel.replace(".jpg", ".png")))
        assert np.array_equal(written, decode_image(mixed / rel).rgb), rel
    page = (out / "index.html").read_text()
    assert page.count("-before.jpg") == 4 and page.count("-after.jpg") == 4 and "face too small" in page


class CollapsingTranslator(IdentityTranslator):
    """Black crops, the first of each call flagged collapsed (restarts spent), the others not."""

    def __call__(self, crops, ids):
        self.calls += 1
        return ([np.zeros_like(c) for c in crops],
                [{"collapsed": k == 0, "restarts": 2, "lpips": 0.5, "steps": 10} for k in range(len(crops))])


def test_a_face_whose_inversion_stayed_degenerate_is_left_as_rendered(mixed, tmp_path):
    out = tmp_path / "out"
    enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(out)), CollapsingTranslator(), log=lambda *a: None)
    two = sorted((r for r in _rows(out) if r["image"] == "two.png"), key=lambda r: r["face"])
    assert two[0]["status"] == "skipped" and two[0]["collapsed"] and "degenerate after 2 restarts" in two[0]["reason"]
    assert two[1]["status"] == "enhanced" and not two[1]["collapsed"]
    source = decode_image(mixed / "two.png").rgb
    written = np.asarray(Image.open(out / "images/two.png"))
    left, right = slice(0, int(two[1]["box"][0]) - 20), slice(int(two[1]["box"][0]), None)
    assert np.array_equal(written[:, left], source[:, left])                    # the collapsed face: untouched
    assert not np.array_equal(written[:, right], source[:, right])              # the other: pasted (black here)
    out = tmp_path / "pasted"                                                   # asked to paste it anyway: flagged, pasted
    enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(out), paste_collapsed=True), CollapsingTranslator(), log=lambda *a: None)
    two = sorted((r for r in _rows(out) if r["image"] == "two.png"), key=lambda r: r["face"])
    assert two[0]["status"] == "enhanced" and two[0]["collapsed"] and two[0]["reason"] is None
    assert not np.array_equal(np.asarray(Image.open(out / "images/two.png"))[:, left], source[:, left])


def test_faces_fitted_worse_than_max_lpips_are_left_as_rendered(mixed, tmp_path):
    out = tmp_path / "out"     # every crop fitted at LPIPS 0.5; the first of each call also collapsed
    enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(out), paste_collapsed=True, max_lpips=0.4),
            CollapsingTranslator(), log=lambda *a: None)
    two = [r for r in _rows(out) if r["image"] == "two.png"]
    assert len(two) == 2 and all(r["status"] == "skipped" and "LPIPS 0.500 > --max-lpips 0.4" in r["reason"] for r in two)
    assert np.array_equal(np.asarray(Image.open(out / "images/two.png")), decode_image(mixed / "two.png").rgb)
    with pytest.raises(DrfhqError, match="--max-lpips"):
        enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(tmp_path / "bad"), max_lpips=-1),
                CollapsingTranslator(), log=lambda *a: None)
    assert not (tmp_path / "bad").exists()


class PulledTranslator(IdentityTranslator):
    """Black crops, the first of each call pulled far towards the mean face (truncation 0.25), the others
    only their layers' spread taken away (truncation 1)."""

    def __call__(self, crops, ids):
        self.calls += 1
        return ([np.zeros_like(c) for c in crops],
                [{"collapsed": False, "restarts": 2, "lpips": 0.3, "steps": 10, "spread_kept": 0.0,
                  "truncation": 0.25 if k == 0 else 1.0} for k in range(len(crops))])


def test_faces_pulled_past_min_truncation_are_left_as_rendered(mixed, tmp_path):
    out = tmp_path / "out"
    enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(out), min_truncation=0.5), PulledTranslator(), log=lambda *a: None)
    two = sorted((r for r in _rows(out) if r["image"] == "two.png"), key=lambda r: r["face"])
    assert two[0]["status"] == "skipped" and "truncation 0.250 < --min-truncation 0.5" in two[0]["reason"]
    assert two[1]["status"] == "enhanced" and two[1]["truncation"] == 1.0 and two[1]["spread_kept"] == 0.0
    source = decode_image(mixed / "two.png").rgb
    written = np.asarray(Image.open(out / "images/two.png"))
    left, right = slice(0, int(two[1]["box"][0]) - 20), slice(int(two[1]["box"][0]), None)
    assert np.array_equal(written[:, left], source[:, left]) and not np.array_equal(written[:, right], source[:, right])
    out = tmp_path / "off"                                                      # off by default: both pasted
    enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(out)), PulledTranslator(), log=lambda *a: None)
    assert [r["status"] for r in _rows(out) if r["image"] == "two.png"] == ["enhanced", "enhanced"]
    with pytest.raises(DrfhqError, match="--min-truncation"):
        enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(tmp_path / "bad"), min_truncation=1.5),
                PulledTranslator(), log=lambda *a: None)
    assert not (tmp_path / "bad").exists()


class GaveUpTranslator(IdentityTranslator):
    """Black crops, the first of each call an early iterate kept after every attempt gave up."""

    def __call__(self, crops, ids):
        self.calls += 1
        return ([np.zeros_like(c) for c in crops],
                [{"collapsed": False, "restarts": 2, "lpips": 0.55, "steps": 5, "gave_up": k == 0} for k in range(len(crops))])


def test_a_face_whose_inversion_gave_up_on_every_attempt_is_left_as_rendered_unless_asked(mixed, tmp_path):
    out = tmp_path / "out"
    enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(out)), GaveUpTranslator(), log=lambda *a: None)
    two = sorted((r for r in _rows(out) if r["image"] == "two.png"), key=lambda r: r["face"])
    assert two[0]["status"] == "skipped" and two[0]["gave_up"] and "gave up on every attempt (kept step 5" in two[0]["reason"]
    assert two[1]["status"] == "enhanced" and two[1]["gave_up"] is False
    source = decode_image(mixed / "two.png").rgb
    left = slice(0, int(two[1]["box"][0]) - 20)
    assert np.array_equal(np.asarray(Image.open(out / "images/two.png"))[:, left], source[:, left])
    out = tmp_path / "pasted"
    enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(out), paste_gave_up=True), GaveUpTranslator(), log=lambda *a: None)
    assert [r["status"] for r in _rows(out) if r["image"] == "two.png"] == ["enhanced", "enhanced"]
    assert not np.array_equal(np.asarray(Image.open(out / "images/two.png"))[:, left], source[:, left])


def test_identity_paste_without_source_detail_is_within_40_db_on_the_face(fixtures):
    """The crop itself replaces the face: what comes back is the alignment's resampling error only."""
    rgb = decode_image(fixtures / "real/frl_canada/003f.jpg").rgb
    lm = faces.landmarks(rgb, faces.detect_faces(rgb)[0].box, 68)
    aligned = align_face(rgb, lm, 1024)
    polygon = P.face_polygon(lm)
    out = P.paste_face(rgb, aligned.image, None, aligned.affine, aligned.qsize, polygon, 0.06 * aligned.qsize)
    canvas = Image.new("L", rgb.shape[1::-1], 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon], fill=1)
    face = np.asarray(canvas, dtype=bool)
    assert psnr(out, rgb, face) >= 40
    assert psnr(out, rgb, ~face) >= 50
    assert not np.array_equal(out, rgb)                                  # it did paste something


def test_a_mark_in_the_aligned_crop_lands_on_its_landmark_in_the_source(fixtures):
    rgb = decode_image(fixtures / "real/frl_canada/008f.jpg").rgb
    lm = faces.landmarks(rgb, faces.detect_faces(rgb)[0].box, 68)
    aligned = align_face(rgb, lm, 256)
    for point in (30, 36, 48):                                           # nose tip, an eye corner, a mouth corner
        crop = aligned.image.copy()
        u, v = np.rint(apply_affine(aligned.affine, lm[point:point + 1] + 0.5)[0] - 0.5).astype(int)
        crop[v - 2:v + 3, u - 2:u + 3] = (255, 0, 255)
        out = P.paste_face(rgb, crop, aligned.image, aligned.affine, aligned.qsize, P.face_polygon(lm, "head", aligned.quad), 8)
        change = np.abs(out.astype(int) - rgb.astype(int)).sum(-1)
        ys, xs = np.nonzero(change > 30)
        centre = np.average(xs, weights=change[ys, xs]), np.average(ys, weights=change[ys, xs])
        assert np.hypot(centre[0] - lm[point][0], centre[1] - lm[point][1]) < 1.5, point


def test_mask_and_blend_stay_inside_their_region():
    polygon = np.array([[20.0, 20.0], [80.0, 20.0], [80.0, 80.0], [20.0, 80.0]])
    mask = P.feathered_mask(polygon, (0, 0, 100, 100), 6)
    assert mask[50, 50] == 1 and mask[10, 50] == 0 and mask[50, 19] == 0 and 0 < mask[50, 23] < 1
    delta = np.random.default_rng(0).normal(size=(100, 100, 3)).astype(np.float32)
    assert np.allclose(P.pyramid_blend(delta, np.ones((100, 100), np.float32)), delta, atol=1e-5)
    assert np.array_equal(P.pyramid_blend(delta, np.zeros((100, 100), np.float32)), np.zeros_like(delta))


def test_reruns_redo_only_what_is_missing_or_changed(mixed, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(mixed, src)
    out = tmp_path / "out"
    cfg = EnhanceConfig(dataset=str(src), ckpt="", out=str(out))
    crashing = IdentityTranslator(fail_after=1)                 # the second image with faces stops the run
    with pytest.raises(RuntimeError):
        enhance(cfg, crashing, log=lambda *a: None)
    done = {p.name for p in (out / "rows").glob("*.json")}
    assert done                                                  # what finished before the crash is kept
    again = IdentityTranslator()
    enhance(cfg, again, log=lambda *a: None)
    assert again.calls == 1                                      # only the image that crashed is translated now
    assert done < {p.name for p in (out / "rows").glob("*.json")}
    third = IdentityTranslator()
    enhance(cfg, third, log=lambda *a: None)
    assert third.calls == 0
    Image.fromarray(np.asarray(Image.open(src / "two.png"))[:, ::-1].copy()).save(src / "two.png")   # a changed file
    fourth = IdentityTranslator()
    enhance(cfg, fourth, log=lambda *a: None)
    assert fourth.calls == 1
    other = IdentityTranslator(size=512)                          # other translation settings redo every face
    enhance(cfg, other, log=lambda *a: None)
    assert other.calls == 2


def test_bad_enhance_options_are_refused_before_anything_is_written(mixed, tmp_path):
    for kw in (dict(methods=("transfer", "layer-swap")), dict(region="hair"), dict(min_face_px=0), dict(feather=0.7)):
        with pytest.raises(DrfhqError):
            enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(tmp_path / "x"), **kw), IdentityTranslator())
    with pytest.raises(DrfhqError, match="not a `drfhq train` run"):
        enhance(EnhanceConfig(dataset=str(mixed), ckpt=str(tmp_path), out=str(tmp_path / "x")))
    with pytest.raises(DrfhqError, match="inside the source"):
        enhance(EnhanceConfig(dataset=str(mixed), ckpt="", out=str(mixed / "out")), IdentityTranslator())
    assert not (tmp_path / "x").exists() and not (mixed / "out").exists()


def test_enhance_command_with_a_trained_run(mixed, tiny_run, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(mixed / "two.png", src)
    shutil.copy(mixed / "broken.jpg", src)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "drfhq_tools.cli", "enhance", str(src), str(out), "--ckpt", str(tiny_run), "--steps", "2",
           "--lpips-net", "alex", "--restarts", "0", "--paste-collapsed"]   # a 2-step generator's faces are degenerate
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {(r["image"], r["face"]): r for r in _rows(out)}
    assert rows[("two.png", 0)]["status"] == rows[("two.png", 1)]["status"] == "enhanced"
    assert rows[("two.png", 0)]["lpips"] > 0 and rows[("two.png", 0)]["steps"] == 2
    assert rows[("broken.jpg", None)]["status"] == "failed"
    before = decode_image(src / "two.png").rgb
    after = np.asarray(Image.open(out / "images/two.png"))
    assert after.shape == before.shape
    box = [int(v) for v in rows[("two.png", 0)]["box"]]
    inner = (slice(box[1] + 10, box[3] - 10), slice(box[0] + 10, box[2] - 10))
    assert np.abs(after[inner].astype(int) - before[inner].astype(int)).mean() > 2       # the face was replaced
    assert np.array_equal(after[:20], before[:20])                                         # far from any face: untouched
    assert len(list((out / "latents").glob("g_render-*/*.pt"))) == 2


def test_the_example_configs_are_valid_enhance_and_translate_configs(mixed, tmp_path):
    from drfhq_tools.dataset.config import load_config_file, merge_config
    from drfhq_tools.gan.translate import TranslateConfig

    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "manifests" / "examples"
    cfg = merge_config(EnhanceConfig, load_config_file(root / "enhance.json"), {"dataset": str(mixed), "ckpt": "", "out": str(tmp_path)}, "enhance.json")
    cfg = __import__("dataclasses").replace(cfg, device="cpu")
    cfg.validate_common()
    merge_config(TranslateConfig, load_config_file(root / "translate.json"), {"dataset": "d", "ckpt": "c", "out": "o"}, "translate.json")
