"""`drfhq train` on the CPU with tiny generators: consistency losses, resume, two gloo processes."""

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from drfhq_tools.errors import DrfhqError
from drfhq_tools.gan import losses as L
from drfhq_tools.gan.stylegan2 import Generator, StyleGAN2Config
from drfhq_tools.gan.train import TrainConfig, Trainer, train


def _cfg(dataset, out, **kw):
    values = dict(dataset=str(dataset), out=str(out), base="none", network="tiny", batch=4, mbstd_group=2,
                  kimg=0.024, snapshot_kimg=0.012, grid=2, limit=24, workers=0)
    values.update(kw)
    return TrainConfig(**values)


def _z(n, dim, seed=5):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32))


def test_identity_steps_lower_the_identity_consistency_loss(fixture_dataset, tmp_path):
    torch.manual_seed(0)
    g_real = Generator(StyleGAN2Config(resolution=64, z_dim=32, w_dim=32, mapping_layers=2, channel_base=2048, channel_max=64))
    cfg = _cfg(fixture_dataset, tmp_path / "run", w_adversarial=0.0, w_colour=0.0, w_geometry=0.0, augment=(),
               lr_g=0.002, resolution=64)
    trainer = Trainer(cfg, g_real, {"base": "test"})
    with torch.no_grad():   # G_render drifts away from G_real (as adversarial training makes it)
        gen = torch.Generator().manual_seed(1)
        for name, p in trainer.g_render.named_parameters():
            if name.startswith("synthesis") and name.endswith(".weight") and "affine" not in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    for _ in range(4):      # each step lowers the loss on the batch it was computed from
        z = trainer._draw()["z"]
        before = trainer.evaluate(z)["identity"]
        trainer.step()
        after = trainer.evaluate(z)["identity"]
        assert before > 0.005 and after < before, (before, after)
    untouched = dict(trainer.g_real.named_parameters())
    assert all(not p.requires_grad for p in untouched.values())   # G_real is never trained


def test_identity_loss_is_differentiable_and_zero_for_equal_images(fixture_dataset):
    from drfhq_tools.dataset.rows import AlignedImages, dataset_rows, median_landmarks5

    rows, size = dataset_rows(fixture_dataset, 6)
    images = AlignedImages([r["image_file"] for r in rows], 128)
    loss = L.IdentityLoss(median_landmarks5(rows, size, 128), 128)
    x = (torch.stack([images[i] for i in range(len(images))]).float() / 127.5 - 1).requires_grad_(True)
    same = loss(x, loss.embed(x).detach())
    assert same.abs().max() < 1e-5
    other = loss(x, loss.embed(x.flip(0)).detach())
    assert other.min() > 0.01            # different people
    other.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert len(dataset_rows(fixture_dataset, 6)[0]) == 6


def test_resume_continues_exactly_where_it_stopped(fixture_dataset, tmp_path):
    whole = train(_cfg(fixture_dataset, tmp_path / "whole"), log=lambda *a: None)
    part = _cfg(fixture_dataset, tmp_path / "part", kimg=0.012)
    train(part, log=lambda *a: None)
    with pytest.raises(DrfhqError, match="already here"):
        train(part, log=lambda *a: None)
    with pytest.raises(DrfhqError, match="other settings"):
        train(replace(part, kimg=0.024, lr_g=0.001), resume=True, log=lambda *a: None)
    train(replace(part, kimg=0.024), resume=True, log=lambda *a: None)
    a = torch.load(whole / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for key in ("g_render", "g_ema", "d"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert [r["identity"] for r in a["history"]] == [r["identity"] for r in b["history"]]
    for path in ("g_render/generator.json", "losses.csv", "losses.png", "train-config.json"):
        assert (whole / path).is_file(), path
    grids = sorted((whole / "snapshots").glob("grid-*.png"))
    assert len(grids) == 3      # start, 0.012 kimg, 0.024 kimg
    # a time budget stops after the step that spends it, with a snapshot; --resume goes on as if never stopped
    logged = []
    timed = train(_cfg(fixture_dataset, tmp_path / "timed", max_minutes=1e-9), log=logged.append)
    assert torch.load(timed / "checkpoint.pt", weights_only=False)["step"] == 1
    assert any("--max-minutes" in line for line in logged)
    assert len(list((timed / "snapshots").glob("grid-*.png"))) == 2     # start, and where it stopped
    train(_cfg(fixture_dataset, tmp_path / "timed"), resume=True, log=lambda *a: None)
    c = torch.load(timed / "checkpoint.pt", weights_only=False)
    assert c["step"] == 6 and all(torch.equal(a["g_ema"][n], c["g_ema"][n]) for n in a["g_ema"])


def test_bad_options_fail_before_anything_is_written(fixture_dataset, tmp_path):
    for bad in (dict(network="huge"), dict(batch=0), dict(freeze_d=9), dict(precision="fp8"), dict(device="cuda:x"), dict(augment=("rotate",)), dict(identity="arcface"),
                dict(resolution=48), dict(max_minutes=0)):
        with pytest.raises(DrfhqError):
            train(_cfg(fixture_dataset, tmp_path / "bad", **bad))
        assert not (tmp_path / "bad").exists()
    with pytest.raises(DrfhqError, match="nothing to resume"):
        train(_cfg(fixture_dataset, tmp_path / "bad"), resume=True)


def test_two_gloo_processes_give_the_result_of_one(fixture_dataset, tmp_path):
    single = train(_cfg(fixture_dataset, tmp_path / "one", kimg=0.012), log=lambda *a: None)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "drfhq_tools.cli",
           "train", str(fixture_dataset), "--out", str(tmp_path / "two"), "--base", "none", "--network", "tiny", "--workers", "0",
           "--batch", "4", "--mbstd-group", "2", "--kimg", "0.012", "--snapshot-kimg", "0.012", "--grid", "2", "--limit", "24"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    a = torch.load(single / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 3
    # Adam divides each gradient by its own magnitude, so an element whose gradient is ~0 may step by
    # +-lr on float rounding of the all-reduce; everything else must agree to float precision
    for key in ("g_render", "d"):
        diff = torch.cat([(a[key][n] - b[key][n]).abs().flatten() for n in a[key]])
        close = float((diff < 1e-4).float().mean())
        assert close > 0.99 and float(diff.max()) <= 3 * 0.002 + 1e-4, (key, close, float(diff.max()))
    history_a = np.array([[r["identity"], r["d_loss"]] for r in a["history"]])
    history_b = np.array([[r["identity"], r["d_loss"]] for r in b["history"]])
    assert np.allclose(history_a, history_b, rtol=2e-3, atol=1e-5)   # the same batches and losses, step by step


def test_augment_is_the_same_split_or_whole():
    gen = torch.Generator().manual_seed(0)
    params = L.draw_augment(4, gen)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    whole = L.augment(x, params, ("color", "translation", "cutout"))
    halves = torch.cat([L.augment(x[a:a + 2], L.slice_augment(params, a, a + 2), ("color", "translation", "cutout"))
                        for a in (0, 2)])
    assert torch.equal(whole, halves)
    assert not torch.equal(whole, x)
    assert torch.equal(L.augment(x, params, ()), x)


def test_translation_moves_whole_pixels_and_r1_differentiates_through_it():
    """The shift grid_sample (nearest, zeros) made, done with a gather: CUDA cannot differentiate
    grid_sample's backward, and R1 takes the gradient of D's gradient through the augmented reals."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(3)
    x = torch.rand(6, 3, 16, 24, generator=gen)
    shift = torch.tensor([[0, 0], [3, -2], [-5, 4], [23, 0], [-24, 15], [2, 16]])
    theta = torch.zeros(6, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * shift[:, 0] / 24
    theta[:, 1, 2] = -2 * shift[:, 1] / 16
    expected = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), mode="nearest",
                             padding_mode="zeros", align_corners=False)
    moved = L.translate_images(x, shift)
    assert torch.equal(moved, expected)
    assert torch.equal(moved[1, :, :-2, 3:], x[1, :, 2:, :-3]) and moved[1, :, -2:].abs().sum() == 0   # (dx, dy) = (3, -2)
    real = x.clone().requires_grad_(True)       # an R1 penalty through the shift: the gradient of a gradient
    score = (L.translate_images(real, shift) ** 3).sum()
    (grad,) = torch.autograd.grad(score, real, create_graph=True)
    grad.square().sum().backward()
    assert real.grad is not None and real.grad.abs().sum() > 0


def test_example_configs_build_their_dataclasses():
    from pathlib import Path

    from drfhq_tools.dataset.config import load_config_file, merge_config
    from drfhq_tools.gan.translate import TranslateConfig

    examples = Path(__file__).resolve().parents[1] / "manifests" / "examples"
    train_cfg = merge_config(TrainConfig, load_config_file(examples / "train.json"), {"dataset": "d", "out": "o"}, "train.json")
    assert train_cfg.base == "mobilestylegan-ffhq" and train_cfg.augment == ("color", "translation", "cutout")
    tr = merge_config(TranslateConfig, load_config_file(examples / "translate.json"), {"dataset": "d", "ckpt": "c", "out": "o"}, "t")
    assert tr.methods == ("transfer", "project-real", "layer-swap")


# ---------------------------------------------------------------- the paper's recipe on an official file

def test_train_from_a_protocol3_nvidia_file_starts_d_from_the_file(fixture_dataset, tmp_path):
    import json
    import subprocess
    import sys

    from drfhq_tools.gan.networks import read_official

    from conftest import FIXTURES

    pkl = FIXTURES.parent / "checkpoints" / "nvidia-ada-64-p3.pkl"
    out = tmp_path / "run"
    cli = [sys.executable, "-m", "drfhq_tools.cli", "train", str(fixture_dataset), "--out", str(out), "--base", str(pkl),
           "--kimg", "0.004", "--batch", "4", "--mbstd-group", "2", "--limit", "8", "--grid", "2", "--freeze-d", "2",
           "--workers", "2"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    saved = json.loads((out / "train-config.json").read_text())
    assert saved["resolution"] == 64                          # the base generator's own resolution by default
    assert saved["discriminator"] == f"{pkl} (D)" and saved["freeze_d"] == 2
    assert "discriminator: " + str(pkl) in "".join((done.stdout + done.stderr).split()).replace("discriminator:", "discriminator: ")
    assert (out / "g_render" / "generator.json").is_file() and len(list((out / "snapshots").glob("grid-*.png"))) == 2
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 1
    file_d = read_official(pkl).d.state_dict()
    for name, value in state["d"].items():
        if name.startswith(("b64.", "b32.")):                 # FreezeD: the first two blocks never move
            assert torch.equal(value, file_d[name]), name
        else:                                                 # one Adam step (lr 0.002) from the file's weights
            assert float((value - file_d[name]).abs().max()) <= 0.0021, name


def test_fresh_discriminator_noise_and_r1_follow_the_recipe(fixture_dataset, tmp_path, monkeypatch):
    trainer = Trainer(_cfg(fixture_dataset, tmp_path / "run", batch=4, r1_interval=2))
    assert trainer.resolution == 32 and trainer.d_source == "fresh"
    first, second = trainer._draw()["noise"], None
    assert set(first) == set(trainer.g_real.noise_maps()) and first["b32.conv1"].shape == (4, 1, 32, 32)
    seen = {}
    real_r1 = L.r1_penalty

    def spy(logits, images):
        seen["images"] = images.detach().clone()
        return real_r1(logits, images)
    monkeypatch.setattr(L, "r1_penalty", spy)
    reals = trainer.images
    trainer.step()                        # step 0 regularises: R1 at the reals as loaded, not as augmented
    idx = next(iter(__import__("drfhq_tools.gan.train", fromlist=["_StepBatches"])._StepBatches(len(reals), 0, 4, 0, 0, 1)))
    expected = torch.stack([reals[i] for i in idx]).float() / 127.5 - 1
    assert torch.equal(seen["images"], expected)
    trainer.step_index = 0
    second = trainer._draw()["noise"]
    assert torch.equal(first["b32.conv1"], second["b32.conv1"])          # per-step draws: resumable
    trainer.step_index = 1
    assert not torch.equal(first["b32.conv1"], trainer._draw()["noise"]["b32.conv1"])


def test_loader_workers_stream_the_same_reals(fixture_dataset, tmp_path):
    a = Trainer(_cfg(fixture_dataset, tmp_path / "a", workers=0))
    b = Trainer(_cfg(fixture_dataset, tmp_path / "b", workers=2))
    for _ in range(3):
        assert torch.equal(a._reals(), b._reals())
