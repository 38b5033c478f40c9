"""Every input form a render folder holds decodes to the same RGB pixels, or to a named rejection."""

import io

import numpy as np
import pytest
from PIL import Image

from drfhq_tools.dataset.decode import RejectedImage, decode_image


@pytest.fixture(scope="module")
def photo(fixtures):
    return Image.open(fixtures / "real/frl_canada/003f.jpg").convert("RGB")


def _save(tmp_path, image, name, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


@pytest.mark.parametrize("name,kw", [("a.png", {}), ("a.tif", {}), ("a.webp", {"lossless": True}),
                                      ("a.tiff", {"compression": "tiff_lzw"})])
def test_lossless_formats_give_identical_pixels_and_pixel_hash(tmp_path, photo, name, kw):
    reference = decode_image(_save(tmp_path, photo, "ref.png"))
    other = decode_image(_save(tmp_path, photo, name, **kw))
    assert np.array_equal(reference.rgb, other.rgb)
    assert reference.pixel_sha256 == other.pixel_sha256


def test_exif_orientation_is_applied(tmp_path, photo):
    rotated = photo.transpose(Image.Transpose.ROTATE_90)   # stored turned 90 degrees counter-clockwise ...
    exif = Image.Exif()
    exif[0x0112] = 6                                         # ... tagged "rotate 90 CW to view" (orientation 6)
    path = _save(tmp_path, rotated, "r.jpg", exif=exif, quality=98)
    decoded = decode_image(path).rgb
    assert decoded.shape[:2] == (photo.height, photo.width)
    upright = np.asarray(photo, dtype=np.float32)
    assert np.abs(decoded.astype(np.float32) - upright).mean() < 4.0


def test_grey_16bit_palette_and_cmyk(tmp_path, photo):
    grey16 = Image.fromarray((np.asarray(photo.convert("L"), dtype=np.uint16) * 257))
    d = decode_image(_save(tmp_path, grey16, "g16.png"))
    assert d.rgb.dtype == np.uint8 and d.rgb.shape[2] == 3
    assert np.abs(d.rgb[..., 0].astype(int) - np.asarray(photo.convert("L"), dtype=int)).max() <= 1
    pal = decode_image(_save(tmp_path, photo.convert("P", palette=Image.Palette.ADAPTIVE), "p.png"))
    assert np.abs(pal.rgb.astype(int) - np.asarray(photo, dtype=int)).mean() < 8
    cmyk = decode_image(_save(tmp_path, photo.convert("CMYK"), "c.tif"))
    assert np.abs(cmyk.rgb.astype(int) - np.asarray(photo, dtype=int)).mean() < 3
    la = decode_image(_save(tmp_path, photo.convert("LA"), "la.png"))
    assert la.had_alpha and la.rgb.shape[2] == 3


def test_transparent_pixels_take_the_background(tmp_path):
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[8:24, 8:24] = (200, 100, 50, 255)
    path = _save(tmp_path, Image.fromarray(rgba, "RGBA"), "t.png")
    black = decode_image(path, background="black").rgb
    white = decode_image(path, background="white").rgb
    assert (black[0, 0] == 0).all() and (white[0, 0] == 255).all()
    assert (black[16, 16] == (200, 100, 50)).all() and (white[16, 16] == (200, 100, 50)).all()


def test_bad_files_are_rejected_with_a_reason(tmp_path, photo):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_bytes(b"this is not an image at all" * 10)
    data = io.BytesIO()
    photo.save(data, format="PNG")
    (tmp_path / "cut.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    Image.new("1", (12000, 10000)).save(tmp_path / "bomb.png")
    expected = {"empty.png": "empty_file", "text.jpg": "not_an_image", "cut.png": "truncated", "bomb.png": "decompression_bomb"}
    for name, reason in expected.items():
        with pytest.raises(RejectedImage) as info:
            decode_image(tmp_path / name)
        assert info.value.reason == reason, (name, info.value)
