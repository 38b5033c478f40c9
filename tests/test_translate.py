"""`drfhq translate` and bench's generator methods on a tiny CPU run."""

import numpy as np
import pytest
import torch
from PIL import Image

from drfhq_tools.dataset.rows import dataset_rows
from drfhq_tools.errors import DrfhqError
from drfhq_tools.gan import translate as T

ROWS = 4


def _cfg(dataset, run, out, **kw):
    # face_check off unless a test is about it: the tiny run's G_real draws no face, so with the check every inversion
    # restarts and is pulled towards W, at dlib's cost per image (the check's own tests and the record test keep it on)
    values = dict(dataset=str(dataset), ckpt=str(run), out=str(out), methods=T.METHODS, steps=4, lpips_net="alex",
                  limit=ROWS, batch=3, swap_resolution=16, face_check=False)
    values.update(kw)
    return T.TranslateConfig(**values)


def test_translate_writes_one_output_per_row_for_each_method(fixture_dataset, tiny_run, tmp_path, monkeypatch):
    from drfhq_tools.bench.run import dataset_rows

    rows, size = dataset_rows(fixture_dataset, ROWS)
    bar = []
    results = T.translate(_cfg(fixture_dataset, tiny_run, tmp_path / "tr"), log=lambda *a: None,
                          progress=lambda done, total, label: bar.append((done, total)))
    assert set(results) == set(T.METHODS)
    restarts = [torch.load(f)["restarts"] for f in (tmp_path / "tr" / "latents").glob("*/*.pt")]
    # the bar: both generators' first passes, each restart added as it ran; never backwards, never past its end
    assert bar[-1] == (bar[-1][1], 4 * (2 * ROWS + sum(restarts)))
    assert all(a[0] <= b[0] and a[1] <= b[1] and b[0] <= b[1] for a, b in zip(bar, bar[1:]))
    for method, paths in results.items():
        assert sorted(paths) == sorted(r["id"] for r in rows)
        for path in paths.values():
            assert path.parent == tmp_path / "tr" / method
            with Image.open(path) as img:
                assert img.size == (size, size)
    transfer = np.asarray(Image.open(results["transfer"][rows[0]["id"]]))
    swapped = np.asarray(Image.open(results["layer-swap"][rows[0]["id"]]))
    assert not np.array_equal(transfer, swapped)
    assert len(list((tmp_path / "tr" / "latents").glob("g_render-*/*.pt"))) == ROWS

    # a second run reuses the inversions: no projection at all
    monkeypatch.setattr(T.Projector, "project", lambda *a, **k: pytest.fail("projected again"))
    for method in T.METHODS:
        for p in (tmp_path / "tr" / method).glob("*.png"):
            p.unlink()
    bar.clear()
    again = T.translate(_cfg(fixture_dataset, tiny_run, tmp_path / "tr"), log=lambda *a: None,
                        progress=lambda done, total, label: bar.append((done, total)))
    assert all(len(v) == ROWS for v in again.values())
    assert bar[-1] == (4 * 2 * ROWS, 4 * 2 * ROWS)          # inversions already there count as done


def test_reruns_reuse_only_what_the_same_checkpoint_and_settings_made(fixture_dataset, tiny_run, tmp_path, monkeypatch):
    import json
    import shutil

    out = tmp_path / "tr"
    T.translate(_cfg(fixture_dataset, tiny_run, out, methods=("transfer", "layer-swap")), log=lambda *a: None)
    first = {p.name: p.read_bytes() for p in (out / "transfer").glob("*.png")}
    provenance = json.loads((out / "transfer" / "provenance.json").read_text())
    assert provenance["checkpoint_sha256"]["g_render"] == T.generator_sha256(tiny_run / "g_render")
    assert provenance["settings"]["steps"] == 4 and provenance["redrawn"] == ROWS

    # the same settings: nothing is projected or drawn again
    real_project, real_save = T.Projector.project, T._save
    monkeypatch.setattr(T.Projector, "project", lambda *a, **k: pytest.fail("projected again"))
    monkeypatch.setattr(T, "_save", lambda *a, **k: pytest.fail("drawn again"))
    T.translate(_cfg(fixture_dataset, tiny_run, out, methods=("transfer", "layer-swap")), log=lambda *a: None)
    assert json.loads((out / "transfer" / "provenance.json").read_text())["redrawn"] == 0

    # other settings (steps, swap resolution), or a retrained checkpoint: recomputed, never reused
    calls = []
    monkeypatch.setattr(T.Projector, "project", lambda self, *a, **k: calls.append(self.g) or real_project(self, *a, **k))
    monkeypatch.setattr(T, "_save", real_save)
    T.translate(_cfg(fixture_dataset, tiny_run, out, methods=("transfer",), steps=5), log=lambda *a: None)
    assert len(calls) == 2          # two batches of 3 + 1 rows, inverted again
    assert {p.name: p.read_bytes() for p in (out / "transfer").glob("*.png")} != first
    calls.clear()
    T.translate(_cfg(fixture_dataset, tiny_run, out, methods=("layer-swap",), swap_resolution=8), log=lambda *a: None)
    assert not calls and json.loads((out / "layer-swap" / "provenance.json").read_text())["redrawn"] == ROWS

    retrained = tmp_path / "retrained"
    shutil.copytree(tiny_run, retrained)
    from drfhq_tools.gan.networks import load_generator, save_generator
    g = load_generator(retrained / "g_render")
    with torch.no_grad():
        next(p for n, p in g.named_parameters() if n.endswith("torgb.bias")).add_(0.1)
    save_generator(g, retrained / "g_render")
    T.translate(_cfg(fixture_dataset, retrained, out, methods=("transfer",), steps=5), log=lambda *a: None)
    assert len(calls) == 2
    assert json.loads((out / "transfer" / "provenance.json").read_text())["checkpoint_sha256"]["g_render"] == \
        T.generator_sha256(retrained / "g_render")


def test_projection_fits_the_target_better_than_the_mean_face(tiny_run):
    from drfhq_tools.gan.networks import load_generator

    g = load_generator(tiny_run / "g_real")
    cfg = T.TranslateConfig(dataset="unused", ckpt=str(tiny_run), out="unused", steps=60, lpips_net="alex", lr=0.05)
    projector = T.Projector(g, cfg, None)
    with torch.no_grad():
        target = g.synthesize(g.map(torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(3))))
    inv = projector.project(target)
    ws, noise = inv.ws, inv.noise
    assert ws.shape == (2, g.num_ws, g.w_dim) and set(noise) == set(g.noise_maps())
    assert ((inv.steps > 0) & (inv.steps <= 60)).all() and not inv.collapsed.any() and (inv.lpips < 1).all()
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


def test_the_learning_rate_follows_the_space_unless_given(fixture_dataset, tiny_run, tmp_path):
    cfg = lambda **kw: _cfg(fixture_dataset, tiny_run, tmp_path, **kw)
    assert [cfg(space=s).learning_rate for s in T.SPACES] == [0.1, 0.03, 0.03]
    assert cfg(space="w+", lr=0.1).learning_rate == 0.1
    keys = lambda c: T.translation_keys(c, {"g_real": "a" * 64, "g_render": "b" * 64}, 32, np.zeros((5, 2)))["inversion"]
    assert keys(cfg()) == keys(cfg(lr=0.03))            # the default and the same rate given: one inversion
    assert keys(cfg()) != keys(cfg(lr=0.1))
    with pytest.raises(DrfhqError):
        cfg(lr=0.0).validate_options()


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
    from drfhq_tools.bench.store import query
    from drfhq_tools.gan.translate import generator_sha256
    _, recorded = query(tmp_path / "b", "SELECT method, source, checkpoint_sha256, output_key, settings FROM methods ORDER BY method")
    by_method = {r[0]: r for r in recorded}
    assert by_method["input"][2] is None
    assert by_method["transfer"][1] == str(tiny_run) and generator_sha256(tiny_run / "g_render") in by_method["transfer"][2]
    assert '"steps": 2' in by_method["transfer"][4] and by_method["transfer"][3] != by_method["layer-swap"][3]


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
        **__import__("os").environ, "COLUMNS": "80"})
    text = listing.stdout + listing.stderr      # rich writes to stderr
    assert "mobilestylegan-ffhq" in text and "non-commercial" in text and "base generators" in text
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    # one block per model: its name starts a line, its path line follows its description line
    start = next(i for i, line in enumerate(lines) if line.startswith("dlib-face-descriptor  present"))
    assert lines[start + 2].startswith(("  face_recognition_models: models/", "  $DRFHQ_HOME/dlib-face-descriptor/"))


# ---------------------------------------------------------------- spaces, starts, early stop, collapse

def _projector(run, **kw):
    from drfhq_tools.gan.networks import load_generator

    g = load_generator(run / "g_real")
    values = dict(dataset="unused", ckpt=str(run), out="unused", steps=6, lpips_net="alex", lr=0.05, restarts=0)
    values.update(kw)
    return g, T.Projector(g, T.TranslateConfig(**values), None)


def _targets(g, n=2, seed=3):
    with torch.no_grad():
        return g.synthesize(g.map(torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(seed))))


def test_latent_spaces(tiny_run):
    g, p = _projector(tiny_run, space="w")
    inv = p.project(_targets(g))
    assert torch.equal(inv.ws, inv.ws[:, :1].expand_as(inv.ws))          # one w for every layer
    spread = {}
    for space in ("w+", "w+reg"):
        g, p = _projector(tiny_run, space=space, space_regularize=50.0, steps=20)
        ws = p.project(_targets(g)).ws
        spread[space] = float((ws - ws.mean(dim=1, keepdim=True)).square().sum(-1).mean())
    assert spread["w+reg"] < 0.5 * spread["w+"]                          # the layers stay together


def test_w_first_moves_one_w_before_each_layer(tiny_run):
    g, p = _projector(tiny_run, space="w+", w_first=0.99)          # 6 steps, all of them in one w
    ws = p.project(_targets(g)).ws
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    g, p = _projector(tiny_run, space="w+", w_first=0.5)           # 3 in one w, then 3 per layer
    ws = p.project(_targets(g)).ws
    assert not torch.equal(ws, ws[:, :1].expand_as(ws))
    with pytest.raises(DrfhqError, match="--w-first"):
        T.TranslateConfig(dataset="x", ckpt="x", out="x", w_first=1.0).validate_options()


def test_early_stop_at_the_lpips_target(tiny_run):
    g, p = _projector(tiny_run, lpips_target=10.0, start="bank", bank_size=24)    # reached at once by a usable start
    with torch.no_grad():
        target = g.synthesize(p.bank()[0][[5, 17]])
    inv = p.project(target)
    assert inv.steps.tolist() == [0, 0]
    g, p = _projector(tiny_run, lpips_target=10.0)          # the mean face is no usable fit of these: not reached by it
    assert (p.project(_targets(g)).steps > 0).all()
    g, p = _projector(tiny_run, lpips_target=1e-6)                      # never reached
    assert p.project(_targets(g)).steps.tolist() == [6, 6]


def test_each_image_can_have_its_own_lpips_target(tiny_run):
    """bench_translate stops each face at the LPIPS NVIDIA's projector reached on that face."""
    g, p = _projector(tiny_run, start="bank", bank_size=24)
    with torch.no_grad():
        target = torch.cat([g.synthesize(p.bank()[0][[5]]), _targets(g, n=1)])
    inv = p.project(target, lpips_targets=torch.tensor([10.0, 1e-6]))    # the first reached at its start, the second never
    assert inv.steps[0] == 0 and inv.steps_run.tolist() == [0, 6]       # (the second may keep an earlier usable iterate)


def test_collapse_is_detected_and_restarted(tiny_run, monkeypatch):
    target = torch.rand(2, 3, 16, 16) * 2 - 1
    dark = torch.full_like(target, -0.95)
    first, last = torch.tensor([0.5, 0.5]), torch.tensor([0.2, 0.6])
    assert T.collapsed(dark, target, first, last).tolist() == [True, True]
    assert T.collapsed(target, target, first, last).tolist() == [False, True]   # LPIPS did not fall
    # ... which is no collapse when the start itself was degenerate: a usable image beats a black one
    assert T.collapsed(target, target, first, last, torch.tensor([False, True])).tolist() == [False, False]
    g, p = _projector(tiny_run, restarts=2)
    calls = []
    real = T.collapsed

    def first_bad(output, target, a, b, start_bad):      # the first inversion of image 0 collapses, later ones do not
        calls.append(len(output))
        out = real(output, target, a, b, start_bad) & False
        if len(calls) == 1:
            out[0] = True
        return out
    monkeypatch.setattr(T, "collapsed", first_bad)
    inv = p.project(_targets(g))
    assert calls == [2, 1] and inv.restarts.tolist() == [1, 0] and not inv.collapsed.any()
    assert inv.steps_run.tolist() == [12, 6]                             # the cost counts the collapsed start's steps too


def test_each_restart_searches_wider(tiny_run, monkeypatch):
    """A target that no sampled face resembles (a dark face in sunglasses, on the GPU) gets more candidates
    each time: 16, then 64."""
    g, p = _projector(tiny_run)
    target = _targets(g, n=1)
    sampled, real_map = [], g.map
    monkeypatch.setattr(g, "map", lambda z: (sampled.append(len(z)), real_map(z))[1])
    gens = [torch.Generator().manual_seed(0)]
    for attempt in (1, 2):
        p.starts(target, attempt, gens)
    assert sampled == [T.RESTART_CANDIDATES, 4 * T.RESTART_CANDIDATES]


def test_a_flat_colour_is_caught_even_when_its_channels_differ(fixture_dataset):
    """The measured case: a flat dark-red output (with noise-map texture) against a dark face. Its std over
    pixels and channels (0.177) looked like a face's, so the old rule let it through; its structure does not."""
    rows, _ = dataset_rows(fixture_dataset, 2)
    face = torch.from_numpy(np.asarray(Image.open(rows[0]["image_file"]).convert("RGB")).copy()).permute(2, 0, 1)[None].float()
    target = face / 127.5 * 0.3 - 0.8                                   # a dark render of the face
    flat = torch.tensor([-0.55, -0.97, -0.84]).reshape(1, 3, 1, 1) + 0.01 * torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    assert float(flat.std()) > float(T._inner_face(target).std()) / 2            # what fooled the old rule
    assert float(T.face_structure(flat)) < float(T.face_structure(target)) / 10
    first, last = torch.tensor([0.7]), torch.tensor([0.5])
    assert T.collapsed(flat, target, first, last).tolist() == [True]
    assert T.collapsed(target, target, first, last).tolist() == [False]


def test_a_colour_cast_is_degenerate():
    """A blue screen with a face's brightness and texture (what a restart once settled on) is caught by its colour."""
    target = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 0.6 - 0.3
    blue = target.clone()
    blue[:, 0] -= 0.5
    blue[:, 2] += 0.5                                                   # same mean over channels, same structure
    stats = T.face_statistics(target)
    assert T.degenerate(blue, stats).tolist() == [True]
    assert T.degenerate(target + 0.05, stats).tolist() == [False]
    # another generator's image of the latent may be brighter (its tone is the translation's), never far darker
    assert T.degenerate(target + 0.3, stats).tolist() == [True]
    assert T.degenerate(target + 0.3, stats, brighter_ok=True).tolist() == [False]
    assert T.degenerate(target - 0.3, stats, brighter_ok=True).tolist() == [True]
    assert T.degenerate(blue, stats, brighter_ok=True).tolist() == [True]


def test_an_inversion_that_ends_degenerate_returns_its_best_usable_iterate(tiny_run):
    """A loss that prefers black (what LPIPS does on a dark render) drives the last iterate to a dark
    image; the inversion returns the best iterate the collapse rule accepts instead."""
    g, p = _projector(tiny_run, start="bank", bank_size=24, steps=12, lr=0.003)
    bank_w, _ = p.bank()
    with torch.no_grad():
        target = g.synthesize(bank_w[[5, 17]])                        # each start is its own target: usable

    class PrefersBlack(torch.nn.Module):
        def forward(self, image, target):
            return (image + 1).mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1)
    p.lpips = PrefersBlack()
    inv = p.project(target)
    with torch.no_grad():
        kept = g.synthesize(inv.ws, noise=inv.noise or None)
    assert not T.degenerate(kept, T.face_statistics(target)).any()
    assert ((inv.steps > 0) & (inv.steps < 12)).all()                     # an earlier iterate than the last, not the start
    # kept before half the steps: it gave up, and with a restart starts again, keeping the closer usable result
    assert inv.gave_up.tolist() == (inv.steps < 6).tolist() and inv.gave_up.any()
    g, p = _projector(tiny_run, start="bank", bank_size=24, steps=12, lr=0.003, restarts=1)
    p.lpips = PrefersBlack()
    again = p.project(target)
    assert again.restarts.tolist() == inv.gave_up.long().tolist() and not again.collapsed.any()
    assert (again.lpips <= inv.lpips + 1e-6).all()


def test_an_lpips_target_reached_by_a_degenerate_iterate_does_not_stop_the_inversion(tiny_run):
    """Found on the GPU (bench_translate, MobileStyleGAN): an image whose loss reached --lpips-target at an
    iterate the collapse rule calls degenerate stopped there and came back flagged. Only a usable iterate
    counts as reaching the target."""
    g, p = _projector(tiny_run, start="bank", bank_size=24, steps=12, lr=0.003)
    bank_w, _ = p.bank()
    with torch.no_grad():
        target = g.synthesize(bank_w[[5, 17]])

    class PrefersBlack(torch.nn.Module):
        def forward(self, image, target):
            return (image + 1).mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1)
    start_value = float((target + 1).mean(dim=[1, 2, 3]).min())
    g, p = _projector(tiny_run, start="bank", bank_size=24, steps=12, lr=0.003, lpips_target=start_value - 0.2)
    p.lpips = PrefersBlack()              # reached only by images far darker than the target: degenerate ones
    inv = p.project(target)
    with torch.no_grad():
        kept = g.synthesize(inv.ws, noise=inv.noise or None)
    assert not T.degenerate(kept, T.face_statistics(target)).any()
    assert not inv.collapsed.any()


def test_a_restart_from_a_mean_start_takes_the_nearest_of_its_own_candidates(tiny_run):
    g, p = _projector(tiny_run)
    target = _targets(g)
    gens = [torch.Generator().manual_seed(s) for s in (11, 12)]
    picked = p.starts(target, 1, gens)
    for k, seed in enumerate((11, 12)):                                 # the literal choice, from the same draws
        with torch.no_grad():
            w = g.map(torch.randn(T.RESTART_CANDIDATES, g.z_dim, generator=torch.Generator().manual_seed(seed)))
            feats = T.Projector.features(g.synthesize(w))
        images, stats = feats.reshape(-1, 3, 32, 32), T.face_statistics(T.L.resize_area(target[k:k + 1], 32))
        degenerate = T.degenerate(images, tuple(v.expand(len(images), *v.shape[1:]) for v in stats))
        flat = T.face_structure(images) < stats[1] / 2
        distance = torch.cdist(T.Projector.features(target[k:k + 1]), feats)[0]
        tiers = [distance.masked_fill(degenerate, float("inf")), distance.masked_fill(flat, float("inf")), distance]
        expected = next(t for t in tiers if torch.isfinite(t).any()).argmin()    # usable first, then not flat, then any
        assert torch.allclose(picked[k], w[int(expected)])


def test_bank_start_is_the_nearest_sampled_latent_and_is_cached(tiny_run, tmp_path):
    g, p = _projector(tiny_run, start="bank", bank_size=24)
    p.bank_path = tmp_path / "bank.pt"
    bank_w, _ = p.bank()
    with torch.no_grad():
        target = g.synthesize(bank_w[[5, 17]])
    start = p.starts(target, 0, [])
    assert torch.equal(start, bank_w[[5, 17]])
    assert not torch.equal(p.starts(target, 1, []), start)              # a restart takes the next nearest
    _, again = _projector(tiny_run, start="bank", bank_size=24)
    again.bank_path = tmp_path / "bank.pt"
    again.g = None                                                      # the cached bank needs no generator
    assert torch.equal(again.bank()[0], bank_w)


def test_translate_records_each_inversion(fixture_dataset, tiny_run, tmp_path):
    import pyarrow.parquet as pq

    T.translate(_cfg(fixture_dataset, tiny_run, tmp_path / "tr", methods=("transfer", "project-real"), lpips_target=10.0,
                     face_check=True), log=lambda *a: None)
    table = pq.read_table(tmp_path / "tr" / "translate.parquet").to_pylist()
    assert len(table) == 2 * ROWS and {r["generator"] for r in table} == {"g_render", "g_real"}
    # the loose target stops a face at its first usable iterate (a degenerate one does not count), else after 4 steps
    assert all(0 <= r["steps"] <= 4 and r["lpips"] >= 0 and r["lpips_net"] == "alex" for r in table)
    assert all(isinstance(r["restarts"], int) and isinstance(r["collapsed"], bool) and isinstance(r["gave_up"], bool) for r in table)
    assert all(r["exposure_gain"] >= 1 for r in table)
    # nothing was pulled towards W: only an inversion still collapsed after its restarts is
    assert all(r["spread_kept"] == 1.0 and r["truncation"] == 1.0 for r in table if not r["collapsed"] and r["restarts"] == 0)


def test_dark_renders_never_come_back_black_or_flat(fixtures):
    """The issue's failure: MobileStyleGAN inversions of dark renders on black settled on a near-black
    image. Dark skin in a dark scene and a render on black, inverted into the real FFHQ generator."""
    from drfhq_tools.dataset.align import align_face
    from drfhq_tools.dataset.decode import decode_image
    from drfhq_tools.gan.mobilestylegan import MobileStyleGAN
    from drfhq_tools.models import faces

    g = MobileStyleGAN().eval().requires_grad_(False)
    crops = []
    for name in ("render/replicantface_2ids_mit/var_r06c03.jpg", "render/makehuman_expressions_cc0/sad01.png"):
        rgb = decode_image(fixtures / name).rgb
        crops.append(align_face(rgb, faces.landmarks(rgb, faces.detect_faces(rgb)[0].box, 68), 128).image)
    targets = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1
    cfg = T.TranslateConfig(dataset="unused", ckpt="unused", out="unused", steps=10, lpips_net="alex", loss_resolution=128)
    inv = T.Projector(g, cfg, None).project(targets)
    assert not inv.collapsed.any()
    with torch.no_grad():
        out = torch.nn.functional.interpolate(g.synthesize(inv.ws), size=128, mode="area")
    face = (slice(None), slice(32, 104), slice(32, 96))
    for o, t in zip(out, targets):
        assert float(T.face_structure(o[None])) > float(T.face_structure(t[None])) / 2   # not flat
        assert abs(float(o[face].mean() - t[face].mean())) < 0.15         # not black (nor washed out)
        assert 0.6 < float((o[face].mean() + 1) / (t[face].mean() + 1)) < 1 / 0.6


def _aligned_face(fixtures, name="aligned_gan/sample_r00c00.jpg"):
    rgb = np.asarray(Image.open(fixtures / name).convert("RGB").resize((256, 256)))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1


def _blob(face):
    """A smooth face-sized ellipse of the face's inner colours on a blue screen, with some shading."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 256), indexing="ij")
    inside = ((x / 0.45) ** 2 + ((y - 0.1) / 0.6) ** 2 < 1).float()
    inner = T._inner_face(face).mean(dim=[2, 3]).reshape(1, 3, 1, 1)
    blob = inside * inner + (1 - inside) * torch.tensor([-0.6, -0.5, 0.4]).reshape(1, 3, 1, 1)
    return blob + 0.08 * torch.sin(6 * x + 4 * y)


def test_the_output_check_asks_for_a_face_only_where_the_render_has_one_and_looks_at_each_render_once(
        fixtures, fixture_dataset, tiny_run, tmp_path, monkeypatch):
    face = _aligned_face(fixtures)
    pictures = torch.cat([face, _blob(face)])

    class Shows:                  # G_real stand-in: its image of a latent is the picture its first number names
        def synthesize(self, ws, noise=None):
            return pictures[ws[:, 0, 0].long()]

    models = T.RunModels(_cfg(fixture_dataset, tiny_run, tmp_path / "a", face_check=True))
    models._generators["g_real"] = Shows()
    looked_at, find = [], T.faces_in_frame
    monkeypatch.setattr(T, "faces_in_frame", lambda images: looked_at.append(len(images)) or find(images))
    targets = torch.cat([face, face, pictures[1:]])                         # renders: a face twice, then a blob
    ws = torch.tensor([0.0, 1.0, 1.0]).reshape(3, 1, 1).expand(3, 4, 8)    # outputs: the face, the blob, the blob
    assert models.output_check(ws, {}, targets).tolist() == [False, True, False]
    assert looked_at == [2, 2]           # two distinct renders, then the outputs of the two renders with a face
    assert models.output_check(ws, {}, targets).tolist() == [False, True, False]
    assert looked_at == [2, 2, 2]        # the renders are not looked at again


def test_a_face_coloured_blob_passes_the_statistics_but_not_the_face_check(fixtures):
    """The GPU run's case: G_real's image of a W+ latent was an orange blob on a blue screen, with the render's
    inner-face colours and more than its structure, so `degenerate` let it through; no face is found in it."""
    face = _aligned_face(fixtures)
    blob = _blob(face)
    assert T.degenerate(blob, T.face_statistics(face)).tolist() == [False]
    assert T.faces_in_frame(torch.cat([face, blob])).tolist() == [True, False]
    small = torch.nn.functional.interpolate(face, size=96, mode="area")     # a small loss resolution still finds it
    assert T.faces_in_frame(small).tolist() == [True]


def test_an_unusable_output_makes_the_inversion_restart_and_is_flagged_when_it_stays(tiny_run):
    g, p = _projector(tiny_run, restarts=2)
    seen = []

    def first_call_flags_image_0(ws, noise, targets):
        seen.append(len(ws))
        return torch.tensor([len(seen) == 1 and k == 0 for k in range(len(ws))])
    p.output_check = first_call_flags_image_0
    inv = p.project(_targets(g))
    assert seen == [2, 1] and inv.restarts.tolist() == [1, 0] and not inv.collapsed.any()

    p.output_check = lambda ws, noise, targets: torch.ones(len(ws), dtype=torch.bool)     # never usable
    inv = p.project(_targets(g))
    assert inv.restarts.tolist() == [2, 2] and inv.collapsed.all()
    assert inv.spread_kept.tolist() == [1.0, 1.0] and inv.truncation.tolist() == [1.0, 1.0]   # no rung passed: as fitted


def test_an_inversion_still_collapsed_is_pulled_towards_w_until_its_output_is_usable(tiny_run):
    g, p = _projector(tiny_run, space="w+", restarts=1)
    targets = _targets(g)
    fitted = p.project(targets)
    assert not fitted.collapsed.any() and fitted.spread_kept.tolist() == [1.0, 1.0]
    # the output check decides a rung (the untrained tiny generator's own images near its mean w would be far
    # darker or brighter than these targets; what matters is the output the latent stands for)

    def spread(ws):
        return (ws - ws.mean(dim=1, keepdim=True)).norm(dim=-1).amax(dim=1)
    # an output that is a blob unless its layers agree (what G_real makes of a latent far off W)
    p.output_check = lambda ws, noise, targets: spread(ws) > 1e-4
    inv = p.project(targets)
    assert inv.restarts.tolist() == [1, 1] and not inv.collapsed.any()
    assert inv.spread_kept.tolist() == [0.0, 0.0] and inv.truncation.tolist() == [1.0, 1.0]
    assert spread(inv.ws).max() < 1e-4                     # one w for every layer: the fitted layers' mean
    with torch.no_grad():                                  # and the recorded LPIPS is the rescued latent's
        again = p.lpips(p._image(inv.ws, 0.0, inv.noise), T.L.resize_area(targets, p.resolution)).reshape(-1)
    assert torch.allclose(again, inv.lpips, atol=1e-5)

    # usable only at the mean w: the last rung, the mean face
    p.output_check = lambda ws, noise, targets: (ws - p.w_mean).norm(dim=-1).amax(dim=1) > 1e-3
    inv = p.project(targets)
    assert not inv.collapsed.any() and inv.truncation.tolist() == [0.0, 0.0]
    assert torch.allclose(inv.ws, p.w_mean.expand_as(inv.ws), atol=1e-5)


def test_the_face_check_is_part_of_the_inversion_key(fixture_dataset, tiny_run, tmp_path):
    on = T.RunModels(_cfg(fixture_dataset, tiny_run, tmp_path / "a", face_check=True))
    off = T.RunModels(_cfg(fixture_dataset, tiny_run, tmp_path / "b", face_check=False))
    assert on.keys["inversion"]["g_render"] != off.keys["inversion"]["g_render"]
    assert on.projector("g_render", tmp_path).output_check is not None
    assert off.projector("g_render", tmp_path).output_check is None


def test_each_batch_is_drawn_as_soon_as_it_is_inverted(fixture_dataset, tiny_run, tmp_path, monkeypatch):
    """A run cut short (a GPU lease's limit) keeps the outputs of every batch it finished, not only latents."""
    out, real, seen = tmp_path / "tr", T.Projector.project, []

    def project(self, targets, *a, **k):
        seen.append(len(list((out / "transfer").glob("*.png"))))
        return real(self, targets, *a, **k)
    monkeypatch.setattr(T.Projector, "project", project)
    T.translate(_cfg(fixture_dataset, tiny_run, out, methods=("transfer",)), log=lambda *a: None)
    assert seen == [0, 3] and len(list((out / "transfer").glob("*.png"))) == ROWS


def test_a_dark_render_is_inverted_lifted_and_its_output_given_back_at_its_exposure(fixtures, fixture_dataset, tiny_run,
                                                                                     tmp_path, monkeypatch):
    from drfhq_tools.gan import exposure as E

    models = T.RunModels(_cfg(fixture_dataset, tiny_run, tmp_path / "x", steps=2, exposure_floor=0.3, exposure_lift="always"))
    face = (_aligned_face(fixtures)[0] + 1) * 127.5
    renders = {"dark": (face / 12).round(), "lit": face.round()}          # one lit for a dark scene, one as photographed
    seen = {}
    project = T.Projector.project

    def spy(self, targets, *args, **kw):
        seen.update(zip(["dark", "lit"], E.inner_face_mean(targets).tolist()))
        return project(self, targets, *args, **kw)
    monkeypatch.setattr(T.Projector, "project", spy)
    latents = tmp_path / "latents" / "g_render-k"
    models.invert("g_render", latents, ["dark", "lit"],
                  lambda i, r: torch.nn.functional.interpolate(renders[i][None], size=r, mode="area")[0])
    dark, lit = (models.load_latent(latents / f"{i}.pt") for i in ("dark", "lit"))
    assert abs(seen["dark"] - 0.3) < 0.01 and seen["lit"] > 0.4                 # the projector saw the dark one lifted
    assert dark["exposure_gain"] > 3 and lit["exposure_gain"] == 1.0
    assert T.inversion_record(dark)["exposure_gain"] == dark["exposure_gain"]
    with torch.no_grad():
        drawn = models.generator("g_real").synthesize(dark["ws"][None], noise={k: v[None] for k, v in dark["noise"].items()})
        lit_drawn = models.generator("g_real").synthesize(lit["ws"][None], noise={k: v[None] for k, v in lit["noise"].items()})
    given_back = models.decode("transfer", dark)[None]
    assert torch.allclose(given_back, E.scale_exposure(drawn, torch.tensor([1 / dark["exposure_gain"]])), atol=1e-5)
    assert float(E.inner_face_mean(given_back)) < float(E.inner_face_mean(drawn.clamp(-1, 1))) / 2
    assert torch.equal(models.decode("transfer", lit)[None], lit_drawn)         # a lit render's output is untouched


def test_a_dark_render_stuck_as_it_is_is_inverted_again_lifted_and_the_lifted_fit_kept_only_when_usable(
        fixtures, fixture_dataset, tiny_run, tmp_path, monkeypatch):
    from drfhq_tools.gan import exposure as E

    models = T.RunModels(_cfg(fixture_dataset, tiny_run, tmp_path / "x", steps=2, batch=4))    # the default: floor 0.3, stuck
    face = (_aligned_face(fixtures)[0] + 1) * 127.5
    renders = {"stuck": (face / 12).round(), "stuck-lifted-too": (face / 10).round(), "fits": (face / 12).round(),
               "lit": face.round()}
    by_seed = {T._row_seed(0, i): i for i in renders}
    calls = []
    project = T.Projector.project

    def judged(self, targets, seeds, *args, **kw):
        # the verdict is the test's: "stuck" gives up unless lifted, "stuck-lifted-too" gives up either way
        inv = project(self, targets, seeds, *args, **kw)
        ids, dark = [by_seed[s] for s in seeds], (E.inner_face_mean(targets) < 0.29).tolist()
        inv.gave_up = torch.tensor([i == "stuck-lifted-too" or (i == "stuck" and d) for i, d in zip(ids, dark)])
        inv.collapsed = torch.zeros(len(ids), dtype=torch.bool)
        kept = {k: getattr(inv, k).clone() for k in ("ws", "steps_run", "restarts")}      # as returned (invert adds to them)
        calls.append((ids, E.inner_face_mean(targets).tolist(), kept))
        return inv
    monkeypatch.setattr(T.Projector, "project", judged)
    latents = tmp_path / "latents" / "g_render-k"
    bar = []
    meter = T.StepMeter(lambda done, total, label: bar.append((done, total, label)), planned=2 * len(renders))
    models.invert("g_render", latents, list(renders),
                  lambda i, r: torch.nn.functional.interpolate(renders[i][None], size=r, mode="area")[0], meter)
    saved = {i: models.load_latent(latents / f"{i}.pt") for i in renders}
    # the bar: the lifted second try (and any restart) is planned as it starts and named while it runs
    assert bar[-1] == (2 * sum(1 + s["restarts"] for s in saved.values()),) * 2 + ("inverting",)
    assert all(a[0] <= b[0] <= b[1] and a[1] <= b[1] for a, b in zip(bar, bar[1:]))
    lifting = [b for b in bar if b[2].startswith("inverting (lifted")]
    assert lifting and lifting[0][1] >= 2 * len(renders) + 2 * 2 and lifting[0][0] >= 2 * len(renders)

    assert [c[0] for c in calls] == [list(renders), ["stuck", "stuck-lifted-too"]]      # only the stuck dark ones again
    assert max(calls[0][1][:3]) < 0.25 and all(abs(m - 0.3) < 0.01 for m in calls[1][1])  # first as they are, then lifted
    first, lifted = calls[0][2], calls[1][2]
    assert saved["stuck"]["exposure_gain"] > 3 and not saved["stuck"]["gave_up"]       # the lifted fit, kept
    assert torch.equal(saved["stuck"]["ws"], lifted["ws"][0].cpu())
    assert saved["stuck"]["steps_run"] == int(first["steps_run"][0] + lifted["steps_run"][0])
    assert saved["stuck"]["restarts"] == int(first["restarts"][0] + 1 + lifted["restarts"][0])
    # lifted and still stuck: the fit as it is stays (its output is not divided), and the try is counted
    assert saved["stuck-lifted-too"]["exposure_gain"] == 1.0 and saved["stuck-lifted-too"]["gave_up"]
    assert torch.equal(saved["stuck-lifted-too"]["ws"], first["ws"][1].cpu())
    assert saved["stuck-lifted-too"]["steps_run"] == int(first["steps_run"][1] + lifted["steps_run"][1])
    for i, k in (("fits", 2), ("lit", 3)):                 # a dark render that fits as it is, and a lit one: untouched
        assert saved[i]["exposure_gain"] == 1.0 and torch.equal(saved[i]["ws"], first["ws"][k].cpu())
