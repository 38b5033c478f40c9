"""`drfhq translate` and bench's generator methods on a tiny CPU run."""

import numpy as np
import pytest
import torch
from PIL import Image

from drfhq_tools.errors import DrfhqError
from drfhq_tools.gan import translate as T
from drfhq_tools.gan.train import TrainConfig, train

ROWS = 4


@pytest.fixture(scope="module")
def tiny_run(fixture_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    train(TrainConfig(dataset=str(fixture_dataset), out=str(out), base="none", config="tiny", batch=4, mbstd_group=2,
                      kimg=0.008, snapshot_kimg=0.008, grid=2, limit=16), log=lambda *a: None)
    return out


def _cfg(dataset, run, out, **kw):
    values = dict(dataset=str(dataset), ckpt=str(run), out=str(out), methods=T.METHODS, steps=4, lpips_net="alex",
                  limit=ROWS, batch=3, swap_resolution=16)
    values.update(kw)
    return T.TranslateConfig(**values)


def test_translate_writes_one_output_per_row_for_each_method(fixture_dataset, tiny_run, tmp_path, monkeypatch):
    from drfhq_tools.bench.run import dataset_rows

    rows, size = dataset_rows(fixture_dataset, ROWS)
    results = T.translate(_cfg(fixture_dataset, tiny_run, tmp_path / "tr"), log=lambda *a: None)
    assert set(results) == set(T.METHODS)
    for method, paths in results.items():
        assert sorted(paths) == sorted(r["id"] for r in rows)
        for path in paths.values():
            assert path.parent == tmp_path / "tr" / method
            with Image.open(path) as img:
                assert img.size == (size, size)
    transfer = np.asarray(Image.open(results["transfer"][rows[0]["id"]]))
    swapped = np.asarray(Image.open(results["layer-swap"][rows[0]["id"]]))
    assert not np.array_equal(transfer, swapped)
    assert len(list((tmp_path / "tr" / "latents" / "g_render").glob("*.pt"))) == ROWS

    # a second run reuses the inversions: no projection at all
    monkeypatch.setattr(T.Projector, "project", lambda *a, **k: pytest.fail("projected again"))
    for method in T.METHODS:
        for p in (tmp_path / "tr" / method).glob("*.png"):
            p.unlink()
    again = T.translate(_cfg(fixture_dataset, tiny_run, tmp_path / "tr"), log=lambda *a: None)
    assert all(len(v) == ROWS for v in again.values())


def test_projection_fits_the_target_better_than_the_mean_face(tiny_run):
    from drfhq_tools.gan.networks import load_generator

    g = load_generator(tiny_run / "g_real")
    cfg = T.TranslateConfig(dataset="unused", ckpt=str(tiny_run), out="unused", steps=60, lpips_net="alex", lr=0.05)
    projector = T.Projector(g, cfg, None)
    with torch.no_grad():
        target = g.synthesize(g.map(torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(3))))
    ws, noise = projector.project(target)
    assert ws.shape == (2, g.num_ws, g.w_dim) and set(noise) == set(g.noise_maps())
    with torch.no_grad():
        start = g.synthesize(projector.w_mean[None].expand(2, -1))
        fitted = g.synthesize(ws, noise=noise)
    assert (fitted - target).square().mean() < 0.5 * (start - target).square().mean()


def test_bad_translate_options_are_refused(fixture_dataset, tiny_run, tmp_path):
    for bad in (dict(methods=("cyclegan",)), dict(steps=0), dict(lpips_net="squeeze"), dict(swap_resolution=24),
                dict(ckpt=str(tmp_path))):
        with pytest.raises(DrfhqError):
            T.translate(_cfg(fixture_dataset, tiny_run, tmp_path / "bad", **bad))
        assert not (tmp_path / "bad").exists()


def test_bench_runs_generator_methods_by_name_with_ckpt(fixture_dataset, fixtures, tiny_run, tmp_path):
    from drfhq_tools.bench.config import BenchConfig
    from drfhq_tools.bench.run import run_bench

    base = dict(dataset=str(fixture_dataset), real=str(fixtures / "aligned_gan"), cache=str(tmp_path / "c.sqlite"),
                kid_subsets=5, bootstrap=20, limit=ROWS, identity="dlib-torch")
    with pytest.raises(DrfhqError, match="--ckpt"):
        BenchConfig(out=str(tmp_path / "b0"), baselines=("transfer",), **base).validate()
    run = run_bench(BenchConfig(out=str(tmp_path / "b"), baselines=("input", "transfer", "layer-swap"), ckpt=str(tiny_run),
                                translate_steps=2, translate_lpips="alex", **base), log=lambda *a: None)
    assert len(list((tmp_path / "b" / "methods" / "transfer").glob("*.png"))) == ROWS
    methods = {r["method"] for r in run.results}
    assert {"input", "transfer", "layer-swap"} <= methods


def test_translate_and_models_list_commands(fixture_dataset, tiny_run, tmp_path):
    import subprocess
    import sys

    cli = [sys.executable, "-m", "drfhq_tools.cli"]
    done = subprocess.run([*cli, "translate", str(fixture_dataset), "--ckpt", str(tiny_run), "--out", str(tmp_path / "t"),
                           "--method", "transfer,layer-swap", "--steps", "2", "--lpips-net", "alex", "--limit", "2",
                           "--swap-resolution", "16"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(list((tmp_path / "t" / "transfer").glob("*.png"))) == 2
    assert len(list((tmp_path / "t" / "layer-swap").glob("*.png"))) == 2
    bad = subprocess.run([*cli, "translate", str(fixture_dataset), "--ckpt", str(tmp_path), "--out", str(tmp_path / "u")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a `drfhq train` run" in " ".join((bad.stdout + bad.stderr).split())
    listing = subprocess.run([*cli, "models", "list"], capture_output=True, text=True, timeout=120, env={
        **__import__("os").environ, "COLUMNS": "250"})
    text = listing.stdout + listing.stderr      # rich writes its tables to stderr
    assert "mobilestylegan-ffhq" in text and "non-commercial" in text and "base generators" in text
