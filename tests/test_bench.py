"""drfhq bench against the references: clean-fid's FID/KID, the lpips package, and the dlib descriptor;
slices, caching and the result tables."""

import json
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from drfhq_tools.bench.config import BenchConfig
from drfhq_tools.bench.metrics import fid_from_features, kernel_inception_distance
from drfhq_tools.bench.run import dataset_rows, run_bench
from drfhq_tools.bench.slices import MAX_GROUPS, check_slices, slice_groups
from drfhq_tools.bench.store import query
from drfhq_tools.errors import DrfhqError, MissingWeightsError
from drfhq_tools.io import sha256_file
from drfhq_tools.models.identity import DlibIdentity, identity_names
from drfhq_tools.models.inception import InceptionFeatures
from drfhq_tools.models.lpips_net import LpipsDistance, heads_from_flax, read_flax_checkpoint
from drfhq_tools.models.weights import resolve, try_resolve


def _folder_images(folder):
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(Path(folder).iterdir())
            if p.suffix.lower() in (".png", ".jpg")]


@pytest.fixture()
def clean_fid_offline(monkeypatch):
    """clean-fid with its Inception taken from the weights home instead of a download to /tmp."""
    import cleanfid.features

    monkeypatch.setattr(cleanfid.features, "InceptionV3W", cleanfid.features.InceptionV3W)   # restored after the test
    from drfhq_tools.bench.cleanfid_reference import offline_cleanfid

    return offline_cleanfid()


def test_fid_and_kid_equal_clean_fid_on_the_same_folders(fixtures, clean_fid_offline):
    d1, d2 = str(fixtures / "aligned_gan"), str(fixtures / "render/makehuman_expressions_cc0")
    kwargs = dict(mode="clean", device=torch.device("cpu"), num_workers=0, verbose=False, use_dataparallel=False)
    reference_fid = clean_fid_offline.compute_fid(d1, d2, **kwargs)
    np.random.seed(0)
    reference_kid = clean_fid_offline.compute_kid(d1, d2, **kwargs)
    net = InceptionFeatures()
    a, b = net(_folder_images(d1)), net(_folder_images(d2))
    assert fid_from_features(a, b) == pytest.approx(reference_fid, rel=1e-4)
    assert kernel_inception_distance(a, b, seed=0).mean == pytest.approx(reference_kid, rel=1e-4)
    assert abs(fid_from_features(a, a)) < 1e-3   # rank-31 covariances in 2048-d: round-off only


def test_lpips_equals_the_lpips_package_with_the_same_backbone(fixtures):
    import lpips
    import torchvision

    ours = LpipsDistance("alex")
    tree = read_flax_checkpoint(resolve("lpips-alex-backbone").path)
    # The checkpoint's linear heads are lpips' own v0.1 heads, bit for bit: the layout is read right.
    shipped = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu")
    for k, head in enumerate(heads_from_flax(tree)):
        assert np.array_equal(head, shipped[f"lin{k}.model.1.weight"].numpy())
    # An independent route: torchvision's AlexNet filled from the checkpoint, then lpips' own forward.
    alexnet = torchvision.models.alexnet(weights=None)
    convs = sorted(tree["AlexNet_0"], key=lambda k: int(k.split("_")[1]))
    with torch.no_grad():
        for name, index in zip(convs, (0, 3, 6, 8, 10)):
            alexnet.features[index].weight.copy_(torch.from_numpy(tree["AlexNet_0"][name]["kernel"]).permute(3, 2, 0, 1))
            alexnet.features[index].bias.copy_(torch.from_numpy(tree["AlexNet_0"][name]["bias"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    for s, sl in enumerate([reference.net.slice1, reference.net.slice2, reference.net.slice3, reference.net.slice4, reference.net.slice5]):
        for idx, module in sl.named_children():
            if isinstance(module, torch.nn.Conv2d):
                module.load_state_dict(alexnet.features[int(idx)].state_dict())
    images = _folder_images(fixtures / "aligned_gan")[:6]
    a, b = images[:3], images[3:]
    tensor = lambda imgs: torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        expected = reference(tensor(a), tensor(b)).reshape(-1).numpy()
    assert ours(a, b) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    noisy = [np.clip(img.astype(int) + np.random.default_rng(0).integers(-s, s + 1, img.shape), 0, 255).astype(np.uint8)
             for img, s in zip([a[0]] * 3, (4, 16, 48))]
    distances = ours([a[0]] * 4, [a[0], *noisy])
    assert distances[0] == pytest.approx(0, abs=1e-6) and np.all(np.diff(distances) > 0)


def test_lpips_refuses_without_a_real_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("DRFHQ_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="alexnet.ckpt"):
        LpipsDistance("alex")
    assert LpipsDistance("alex", random_backbone=True).name.startswith("lpips_random")


def test_identity_cosine_is_higher_for_the_same_person(fixture_dataset):
    rows, _ = dataset_rows(fixture_dataset, None)
    lisa = [r for r in rows if r["source_path"].startswith("real/frl_lisa_cc0/")]
    others = [r for r in rows if r["source_path"].startswith("real/frl_canada/")][:12]
    net = DlibIdentity()
    embed = lambda rs: net([np.asarray(Image.open(r["image_file"]).convert("RGB")) for r in rs], [r["aligned_lm5"] for r in rs])
    e_lisa, e_other = embed(lisa), embed(others)
    unit = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)
    same = unit(e_lisa) @ unit(e_lisa).T
    cross = unit(e_lisa) @ unit(e_other).T
    same_pairs = same[np.triu_indices(len(lisa), 1)]
    assert same_pairs.mean() > cross.mean() + 0.05
    assert np.median(same_pairs) > np.quantile(cross, 0.9)


def test_bench_slices_cache_and_tables(fixture_dataset, fixtures, tmp_path):
    cache = tmp_path / "cache.sqlite"
    limit = 40          # of the 138 fixture rows: both genders, and a third of the time every metric takes
    base = dict(dataset=str(fixture_dataset), real=str(fixtures / "aligned_gan"), cache=str(cache),
                kid_subsets=10, bootstrap=200, limit=limit)
    first = run_bench(BenchConfig(out=str(tmp_path / "run1"), **base), log=lambda *a: None)
    ok = [r for r in dataset_rows(fixture_dataset, limit)[0]]
    # SFHQ's files are not all square, so the bench aligned them like the renders (run1/real_dataset).
    # Features are keyed by content: every distinct image went through Inception exactly once.
    real_rows = pq.read_table(tmp_path / "run1/real_dataset/manifest.parquet").to_pylist()
    reals = [tmp_path / "run1/real_dataset" / r["image_path"] for r in real_rows if r["status"] == "ok"]
    colour = sorted((tmp_path / "run1/methods/color-transfer").glob("*.png"))
    distinct = {sha256_file(p) for p in [*reals, *[r["image_file"] for r in ok], *colour]}
    assert len(reals) == 32 and len(colour) == len(ok)
    assert first.counters["inception_images"] == len(distinct)
    by = {(r["method"], r["metric"], r["slice"], r["grp"]): r for r in first.results}
    for method in ("input", "color-transfer"):
        assert by[(method, "fid", "all", "all")]["n"] == len(ok)
        for value in {r["gender"] for r in ok}:
            assert by[(method, "lpips", "gender", value)]["n"] == sum(r["gender"] == value for r in ok)
        assert by[(method, "fid", "all", "all")]["flag"] == "small_n"
        assert by[(method, "kid", "all", "all")]["std"] is not None
    assert by[("input", "identity_cosine", "all", "all")]["value"] == pytest.approx(1.0)
    assert by[("input", "lpips", "all", "all")]["value"] == pytest.approx(0.0, abs=1e-6)
    if "faceres" in identity_names("auto"):     # the second network, trained apart from dlib's (fetched where npm is)
        faceres = by[("color-transfer", "identity_cosine_faceres", "all", "all")]
        assert faceres["extractor"] == "hse-faceres-tfjs" and faceres["weights_sha256"] == try_resolve("faceres-bin").sha256
        assert by[("input", "identity_cosine_faceres", "all", "all")]["value"] == pytest.approx(1.0)
        assert 0.3 < faceres["value"] < 1.0
    for metric in ("fid_inf", "precision", "recall", "density", "coverage", "landmark_nme", "skin_delta_e"):
        assert by[("color-transfer", metric, "all", "all")]["value"] is not None, metric
    assert by[("input", "landmark_nme", "all", "all")]["value"] == 0.0 and by[("input", "skin_delta_e", "all", "all")]["value"] == 0.0
    assert by[("color-transfer", "skin_delta_e", "all", "all")]["value"] > 2.0          # Reinhard moves skin colour visibly
    assert 0.5 < by[("color-transfer", "identity_cosine", "all", "all")]["value"] < 1.0
    assert all(r["extractor"] and len(r["weights_sha256"]) == 64 for r in first.results)

    import sqlite3

    with sqlite3.connect(cache) as db:      # every cached value says what computed it
        assert set(db.execute("SELECT DISTINCT device FROM entries")) == {("cpu",)}
        assert {p for (p,) in db.execute("SELECT DISTINCT precision FROM entries")} <= {"float32", "float64"}
    # the same bench again computes nothing: every feature and value comes from the cache
    second = run_bench(BenchConfig(out=str(tmp_path / "run2"), **base), log=lambda *a: None)
    assert {k: v for k, v in second.counters.items() if k != "files_hashed"} == {
        "inception_calls": 0, "inception_images": 0, "identity_calls": 0, "lpips_calls": 0, "landmark_images": 0, "delta_e_pairs": 0}
    # content hashes are cached per file state: only the files this run wrote anew (its aligned real set
    # and colour-transfer outputs) were read to hash them; the dataset's images were not
    assert second.counters["files_hashed"] == len(reals) + len(colour)
    assert [r["value"] for r in second.results] == [r["value"] for r in first.results]

    # a new external method costs only its own images; missing outputs are reported and the rest used
    outside = tmp_path / "mirrored"
    outside.mkdir()
    for r in ok[:-3]:
        Image.open(r["image_file"]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(outside / f"{Path(r['source_path']).stem}.png")
    Image.new("RGB", (64, 64)).save(outside / "stray.png")
    # ... sliced by the folder each render came from, alone and crossed with gender
    third = run_bench(BenchConfig(out=str(tmp_path / "run2"), baselines=("input", f"mirror={outside}"),
                                  slices=("gender", "source_dir"), cross=("gender*source_dir",), **base), log=lambda *a: None)
    assert third.counters["inception_images"] == len(ok) - 3
    mirror = next(m for m in third.methods if m.name == "mirror")
    assert len(mirror.missing) == 3 and mirror.extra == ["stray.png"]
    columns, rows = query(tmp_path / "run2", "SELECT count(DISTINCT run_id), count(*) FROM per_image")
    assert rows[0][0] == 2
    columns, rows = query(tmp_path / "run2", f"SELECT n, n_missing FROM results WHERE run_id = '{third.run_id}' "
                                             "AND method = 'mirror' AND metric = 'fid' AND slice = 'all'")
    assert rows == [(len(ok) - 3, 3)]
    folders = Counter(str(Path(r["source_path"]).parent) for r in ok)
    assert len(folders) >= 2
    columns, rows = query(tmp_path / "run2", f"SELECT grp, n FROM results WHERE run_id = '{third.run_id}' "
                                             "AND method = 'input' AND metric = 'lpips' AND slice = 'source_dir'")
    assert dict(rows) == folders
    columns, rows = query(tmp_path / "run2", f"SELECT grp, n FROM results WHERE run_id = '{third.run_id}' "
                                             "AND method = 'input' AND metric = 'lpips' AND slice = 'gender*source_dir'")
    assert dict(rows) == Counter(f"{r['gender']}|{Path(r['source_path']).parent}" for r in ok)
    assert (tmp_path / "run2/report_assets/fid_source_dir.png").is_file()
    assert (tmp_path / "run2/report.html").is_file() and (tmp_path / "run2/report_assets/samples.png").is_file()


def test_query_cli_formats(fixture_dataset, fixtures, tmp_path):
    run_bench(BenchConfig(dataset=str(fixture_dataset), real=str(fixtures / "aligned_gan"), out=str(tmp_path / "run"),
                          cache=str(tmp_path / "c.sqlite"), baselines=("input",), kid_subsets=5, bootstrap=50, limit=20),
              log=lambda *a: None)
    cli = [sys.executable, "-m", "drfhq_tools.cli", "query", str(tmp_path / "run")]
    sql = "SELECT metric, n, n_failed FROM results WHERE slice = 'all' ORDER BY metric"
    as_json = json.loads(subprocess.run([*cli, sql, "--format", "json"], capture_output=True, text=True, check=True).stdout)
    faceres = ["identity_cosine_faceres"] if "faceres" in identity_names("auto") else []
    assert [r["metric"] for r in as_json] == sorted(["fid", "fid_inf", "kid", "precision", "recall", "density", "coverage",
                                                      "identity_cosine", "lpips", "landmark_nme", "face_found", "skin_delta_e", *faceres])
    assert all(r["n"] + r.get("n_failed", 0) == 20 for r in as_json)
    as_csv = subprocess.run([*cli, sql, "--format", "csv"], capture_output=True, text=True, check=True).stdout
    assert as_csv.splitlines()[0] == "metric,n,n_failed"
    bad = subprocess.run([*cli, "SELECT * FROM nowhere"], capture_output=True, text=True)
    assert bad.returncode == 2 and "query failed" in bad.stderr


def test_lpips_prefers_torchvisions_own_backbone_file(tmp_path, monkeypatch, fixtures):
    from drfhq_tools.models.lpips_net import backbone_state_from_flax

    reference = LpipsDistance("alex")
    state = backbone_state_from_flax(read_flax_checkpoint(resolve("lpips-alex-backbone").path), "alex")
    home = tmp_path / "home"
    target = home / "torchvision-alexnet/alexnet-owt-7be5be79.pth"
    target.parent.mkdir(parents=True)
    torch.save({f"features.{i}.{k}": t for i, (w, b) in state.items() for k, t in (("weight", w), ("bias", b))}, target)
    monkeypatch.setenv("DRFHQ_HOME", str(home))
    own = LpipsDistance("alex")
    assert own.weights_sha256 == sha256_file(target) != reference.weights_sha256
    images = _folder_images(fixtures / "aligned_gan")[:4]
    assert own(images[:2], images[2:]) == pytest.approx(reference(images[:2], images[2:]), rel=1e-6)


def _shifted(rgb: np.ndarray, dx: int) -> np.ndarray:
    """The image moved dx pixels to the right (left edge repeated)."""
    out = np.empty_like(rgb)
    out[:, dx:] = rgb[:, :-dx]
    out[:, :dx] = rgb[:, :1]
    return out


def test_geometry_identity_and_outputs_of_another_size(fixture_dataset, tmp_path):
    """An output whose face moved is measured where it moved to: landmark NME equals the shift over the
    inter-ocular distance, and identity on the re-detected face stays high where the render's crop falls
    off. Outputs at half the dataset's size are resized (flagged per image), never dropped; a folder with
    nothing usable stops the bench before anything is written."""
    from drfhq_tools.bench.metrics import inter_ocular

    rows, size = dataset_rows(fixture_dataset, 16)
    real = tmp_path / "real"
    real.mkdir()
    for r in rows[:12]:
        Image.open(r["image_file"]).save(real / f"{r['id']}.png")
    moved, half = tmp_path / "moved", tmp_path / "half"
    moved.mkdir()
    half.mkdir()
    dx = 12
    for r in rows:
        rgb = np.asarray(Image.open(r["image_file"]).convert("RGB"))
        Image.fromarray(_shifted(rgb, dx)).save(moved / f"{r['id']}.png")
        Image.fromarray(rgb).resize((size // 2, size // 2), Image.LANCZOS).save(half / f"{Path(r['source_path']).stem}.png")
    Image.new("RGB", (size, size)).save(half / "not-a-row.png")
    base = dict(dataset=str(fixture_dataset), real=str(real), cache=str(tmp_path / "c.sqlite"), kid_subsets=5, bootstrap=100,
                limit=16, baselines=("input", f"moved={moved}", f"half={half}"))
    logged = []
    run = run_bench(BenchConfig(out=str(tmp_path / "run"), **base), log=logged.append)
    by = {(r["method"], r["metric"]): r for r in run.results if r["slice"] == "all"}
    values = {}
    for r in run.per_image:
        values.setdefault((r["method"], r["metric"]), {})[r["image_id"]] = r
    # input against itself: geometry, colour, change and identity all exactly kept
    for metric, expected in (("landmark_nme", 0.0), ("skin_delta_e", 0.0), ("lpips", 0.0), ("identity_cosine", 1.0)):
        assert by[("input", metric)]["value"] == pytest.approx(expected, abs=1e-6), metric
    # moved: every found face's NME is the shift over its render's inter-ocular distance
    found = [r for r in rows if values[("moved", "landmark_nme")][r["id"]]["value"] is not None]
    assert len(found) >= 12 and by[("moved", "landmark_nme")]["n_failed"] == len(rows) - len(found)
    # the share of faces found is its own metric, every output counted
    assert by[("moved", "face_found")]["value"] == pytest.approx(len(found) / len(rows)) and by[("moved", "face_found")]["n_failed"] == 0
    assert {values[("moved", "face_found")][r["id"]]["value"] for r in rows} <= {0.0, 1.0}
    for r in found:
        expected = dx / inter_ocular(r["aligned_lm68"])
        assert values[("moved", "landmark_nme")][r["id"]]["value"] == pytest.approx(expected, rel=0.25, abs=0.01)
    assert by[("moved", "identity_cosine")]["protocol"].startswith("faces_redetected_on_each_image")
    on_render_crop = run_bench(BenchConfig(out=str(tmp_path / "run_crop"), identity_crop="render", **base), log=lambda *a: None)
    crop_by = {(r["method"], r["metric"]): r for r in on_render_crop.results if r["slice"] == "all"}
    assert crop_by[("moved", "identity_cosine")]["protocol"].startswith("render_landmarks_on_both")
    # the render's crop on a moved face loses identity that the face found again keeps
    assert 1 - crop_by[("moved", "identity_cosine")]["value"] > 10 * (1 - by[("moved", "identity_cosine")]["value"])
    # half: resized to the dataset's size with the filter named, each image flagged, close to the input
    flags = {r["flag"] for r in values[("half", "lpips")].values()}
    assert flags == {f"resized_from_{size // 2}x{size // 2}_lanczos"}
    assert by[("half", "fid")]["n"] == 16 and "resized lanczos" in by[("half", "fid")]["protocol"]
    assert by[("half", "landmark_nme")]["value"] < 0.05 and by[("half", "identity_cosine")]["value"] > 0.95
    assert any("not-a-row.png" in str(line) for line in logged)
    # nothing usable: an error that names the folder and the reason, before any table is written
    stray = tmp_path / "stray"
    stray.mkdir()
    Image.new("RGB", (size, size)).save(stray / "frame_0001.png")
    with pytest.raises(DrfhqError, match=r"stray=.*no usable outputs.*named after a dataset row.*frame_0001.png"):
        run_bench(BenchConfig(out=str(tmp_path / "run_bad"), **{**base, "baselines": ("input", f"stray={stray}")}), log=lambda *a: None)
    assert not (tmp_path / "run_bad/results.duckdb").exists()


def test_cluster_intervals_and_a_second_identity_network(fixture_dataset, tmp_path, monkeypatch):
    """With identity_id in the manifest, intervals resample identities: the rows equal the literal
    cluster bootstrap of the per-image values. A second identity network (ArcFace, when the user
    imports it; here a stand-in that says it is one) adds its own metric, with its own extractor."""
    import shutil

    import pyarrow as pa

    import drfhq_tools.bench.run as bench_run
    from drfhq_tools.bench.metrics import cluster_bootstrap_summary
    from drfhq_tools.models.identity import DlibTorchIdentity

    class StandIn(DlibTorchIdentity):
        name = "stand-in-for-arcface(dlib-torch)"

    real_network = bench_run.identity_network
    monkeypatch.setattr(bench_run, "identity_network", lambda name, device: StandIn(device) if name == "arcface" else real_network(name, device))

    data = tmp_path / "data"
    shutil.copytree(fixture_dataset, data)
    table = pq.read_table(data / "manifest.parquet")
    folders = [str(Path(p).parent) for p in table.column("source_path").to_pylist()]
    pq.write_table(table.set_column(table.schema.get_field_index("identity_id"), "identity_id", pa.array(folders)),
                   data / "manifest.parquet")
    run = run_bench(BenchConfig(dataset=str(data), real=str(data), out=str(tmp_path / "run"), cache=str(tmp_path / "c.sqlite"),
                                baselines=("color-transfer",), kid_subsets=5, bootstrap=300, limit=24, identity="dlib,arcface"),
                    log=lambda *a: None)
    rows, _ = dataset_rows(data, 24)
    clusters = {r["id"]: r["identity_id"] for r in rows}
    assert len(set(clusters.values())) < len(rows)
    per = {r["image_id"]: r["value"] for r in run.per_image if r["metric"] == "lpips"}
    row = next(r for r in run.results if r["metric"] == "lpips" and r["slice"] == "all")
    expected = cluster_bootstrap_summary(np.array([per[i] for i in clusters]), list(clusters.values()), 300, 0)
    assert "cluster_bootstrap300_identity_id" in row["protocol"]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.ci_low, expected.ci_high), rel=1e-12)
    first = next(r for r in run.results if r["metric"] == "identity_cosine" and r["slice"] == "all")
    second = next(r for r in run.results if r["metric"] == "identity_cosine_arcface" and r["slice"] == "all")
    assert first["extractor"] == "dlib-resnet-v1" and second["extractor"] == StandIn.name
    assert second["value"] == pytest.approx(first["value"], abs=1e-4)          # the same network underneath


def test_decode_workers_keep_order_and_values(fixture_dataset):
    from drfhq_tools.bench.loading import batches, load_inception_input

    rows, _ = dataset_rows(fixture_dataset, 7)
    paths = [r["image_file"] for r in rows]
    here = [x for b in batches(paths, load_inception_input, 3, 0) for x in b]
    pooled = [x for b in batches(paths, load_inception_input, 3, 2) for x in b]
    assert len(here) == len(pooled) == 7 and all(np.array_equal(a, b) for a, b in zip(here, pooled))


def test_the_example_config_is_a_valid_bench_config(fixture_dataset, tmp_path):
    from drfhq_tools.dataset.config import load_config_file, merge_config

    example = Path(__file__).resolve().parents[1] / "manifests/examples/bench.json"
    cfg = merge_config(BenchConfig, load_config_file(example), {"dataset": str(fixture_dataset), "real": str(tmp_path),
                                                                "out": str(tmp_path / "o")}, "bench.json")
    cfg.validate()
    assert cfg.prdc_k == 5 and cfg.identity_crop == "output"
    with pytest.raises(DrfhqError, match="--identity-crop"):
        BenchConfig(dataset=str(fixture_dataset), real=str(tmp_path), out="o", identity_crop="face").validate()
    with pytest.raises(DrfhqError, match="--identity dlib,dlib-torch"):
        BenchConfig(dataset=str(fixture_dataset), real=str(tmp_path), out="o", identity="dlib,dlib-torch").validate()


def test_contact_sheet_tiles_rows_of_files_under_their_labels(tmp_path):
    from PIL import Image

    from drfhq_tools.report.grid import LABEL_HEIGHT, path_grid

    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (50, 30), (255, 0, 0)).save(red)
    Image.new("RGB", (8, 8), (0, 0, 255)).save(blue)
    grid = path_grid([[red, blue], [blue, tmp_path / "missing.png"]], 20, labels=["a", "b"])
    assert grid.size == (40, LABEL_HEIGHT + 40)
    assert grid.getpixel((10, LABEL_HEIGHT + 10)) == (255, 0, 0) and grid.getpixel((30, LABEL_HEIGHT + 10)) == (0, 0, 255)
    assert grid.getpixel((30, LABEL_HEIGHT + 30)) == (255, 255, 255)          # a missing file: a white tile
    assert path_grid([[red]], 20).size == (20, 20)                               # no labels, no header


def test_slices_take_tags_source_folders_and_carried_metadata(tmp_path):
    import pyarrow as pa

    n = MAX_GROUPS + 6
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({
        "id": [f"r{i:03d}" for i in range(n)], "status": ["ok"] * (n - 1) + ["rejected"],
        "source_path": [f"artist{i % 2}/set/{i}.png" if i % 3 else f"{i}.png" for i in range(n)],
        "gender": [None if i == 0 else "female" if i % 2 else "male" for i in range(n)],
        "age_group": ["20-29"] * n, "race": ["asian"] * n,
        "meta_glasses": [bool(i % 2) for i in range(n)], "meta_light": [i % 3 for i in range(n)],
        "meta_yaw_deg": [float(i) for i in range(n)],
    }), manifest)
    check_slices(manifest, ("gender", "source_dir", "meta_glasses", "meta_light"), ("gender*source_dir", "meta_light*meta_glasses"))
    with pytest.raises(DrfhqError, match=r"meta_yaw_deg: 69 distinct values.*bin it"):
        check_slices(manifest, ("meta_yaw_deg",), ())
    with pytest.raises(DrfhqError, match=r"meta_pose: not a slice column.*carries meta_glasses, meta_light, meta_yaw_deg"):
        check_slices(manifest, ("gender",), ("gender*meta_pose",))
    with pytest.raises(DrfhqError, match="--cross race: join two or more"):
        check_slices(manifest, (), ("race",))
    with pytest.raises(DrfhqError, match="--slices/--cross skin"):          # what BenchConfig checks before any work
        BenchConfig(dataset=str(tmp_path), real=str(tmp_path), out=str(tmp_path / "run"), slices=("skin",)).validate()

    rows = pq.read_table(manifest).to_pylist()[:6]
    groups = {(s, g): ids for s, g, ids in slice_groups(rows, ["source_dir", "meta_glasses", "meta_light", "gender*meta_light"])}
    assert groups[("all", "all")] == [r["id"] for r in rows]
    assert groups[("source_dir", ".")] == ["r000", "r003"] and groups[("source_dir", "artist1/set")] == ["r001", "r005"]
    assert groups[("meta_glasses", "False")] == ["r000", "r002", "r004"]       # False and 0 are values, not 'unknown'
    assert groups[("meta_light", "0")] == ["r000", "r003"]
    assert groups[("gender*meta_light", "unknown|0")] == ["r000"] and groups[("gender*meta_light", "female|0")] == ["r003"]
