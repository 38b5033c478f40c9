"""build-dataset under Ray Data: the same manifest as the local engine, failed shards redone alone on a
rerun, and model actors placed where their resource is (a 3-node cluster on one machine)."""

import json

import pyarrow.parquet as pq
import pytest

from conftest import copy_files
from drfhq_tools.dataset.build import build_dataset
from drfhq_tools.dataset.config import BuildConfig
from drfhq_tools.dataset.engines import FAIL_HOOK
from drfhq_tools.errors import DrfhqError

ray = pytest.importorskip("ray", reason="the Ray engine is an optional extra: pip install 'drfhq-tools[ray]'")


def _sources(fixtures, tmp_path, n=6):
    files = sorted((fixtures / "real/frl_canada").glob("*.jpg"))[:n - 2] + \
        sorted((fixtures / "render/makehuman_expressions_cc0").glob("*.png"))[:2]
    return copy_files(files, tmp_path / "src")


def _config(src, out, **kw):
    return BuildConfig(src=str(src), out=str(out), size=128, batch_size=2, predict_attributes=False, **kw)


def test_ray_and_local_engines_give_equal_manifests(fixtures, tmp_path):
    src = _sources(fixtures, tmp_path)
    build_dataset(_config(src, tmp_path / "local", workers=1))
    build_dataset(_config(src, tmp_path / "ray", engine="ray", workers=2))
    local = pq.read_table(tmp_path / "local/manifest.parquet")
    on_ray = pq.read_table(tmp_path / "ray/manifest.parquet")
    assert on_ray.num_rows == 6 and on_ray.equals(local)
    record = json.loads((tmp_path / "ray/build.json").read_text())
    assert record["engine"]["name"] == "ray" and sum(record["engine"]["batches_by_node"].values()) == 3


def test_a_failed_shard_is_the_only_one_redone(fixtures, tmp_path, monkeypatch):
    src = _sources(fixtures, tmp_path)
    doomed = sorted(p.name for p in src.iterdir())[2]           # in the second batch of two
    monkeypatch.setenv(FAIL_HOOK, doomed)
    with pytest.raises(DrfhqError, match=rf"1 batch\(es\) failed after 2 retries.*{doomed}.*simulated failure"):
        build_dataset(_config(src, tmp_path / "out", engine="ray", workers=2))
    monkeypatch.delenv(FAIL_HOOK)
    result = build_dataset(_config(src, tmp_path / "out", engine="ray", workers=2))
    assert (result.processed, result.reused) == (2, 4)
    manifest = pq.read_table(tmp_path / "out/manifest.parquet").to_pylist()
    paths = [r["source_path"] for r in manifest]
    assert len(paths) == 6 and len(set(paths)) == 6


def test_model_actors_go_to_the_node_with_their_resource(fixtures, tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    gpu_node = cluster.add_node(num_cpus=1, resources={"facegpu": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        src = _sources(fixtures, tmp_path)
        build_dataset(_config(src, tmp_path / "out", engine="ray", workers=1, ray_address=cluster.address,
                              worker_resources=("facegpu=1",)))
        record = json.loads((tmp_path / "out/build.json").read_text())
        assert record["engine"]["batches_by_node"] == {gpu_node.node_id: 3}
        with pytest.raises(DrfhqError, match="--worker-resource facegpu"):
            _config(src, tmp_path / "bad", engine="ray", worker_resources=("facegpu",)).validate()
        with pytest.raises(DrfhqError, match=r"no node of the cluster has facegpu=2 \(largest on a node: 1\)"):
            build_dataset(_config(src, tmp_path / "bad", engine="ray", ray_address=cluster.address, worker_resources=("facegpu=2",)))
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_bench_features_on_ray_actors_equal_the_local_ones(fixture_dataset, fixtures, tmp_path):
    """bench --engine ray: every per-image value equals the local run's, computed by one pool of actors
    that serves every kind of value (so each actor builds each network once)."""
    from drfhq_tools.bench.config import BenchConfig
    from drfhq_tools.bench.run import run_bench

    base = dict(dataset=str(fixture_dataset), real=str(fixtures / "aligned_gan"), limit=8, kid_subsets=5, bootstrap=50,
                batch_size=3, identity="dlib-torch")
    local = run_bench(BenchConfig(out=str(tmp_path / "local"), cache=str(tmp_path / "local.sqlite"), **base), log=lambda *a: None)
    on_ray = run_bench(BenchConfig(out=str(tmp_path / "ray"), cache=str(tmp_path / "ray.sqlite"), engine="ray", workers=2,
                                   **base), log=lambda *a: None)

    def values(run):
        return {(r["method"], r["image_id"], r["metric"]): r["value"] for r in run.per_image}
    a, b = values(local), values(on_ray)
    assert a.keys() == b.keys() and len(a) >= 8 * 2 * 4
    for key in a:
        assert (a[key] is None and b[key] is None) or a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    overall = {(r["method"], r["metric"]): r["value"] for r in on_ray.results if r["slice"] == "all"}
    for r in local.results:
        if r["slice"] == "all" and r["value"] is not None and r["metric"] in ("fid", "kid", "lpips", "identity_cosine"):
            assert overall[(r["method"], r["metric"])] == pytest.approx(r["value"], rel=1e-3, abs=1e-4)
    assert on_ray.counters["ray_actors"] == 2                   # both actors served, across every kind of value
    assert on_ray.counters["inception_calls"] == 0 and local.counters["inception_calls"] > 0   # the networks ran there


def test_an_actor_gives_its_cpus_to_torch_and_onnxruntime():
    """Without Ray: the stage actor's constructor sets the threads its libraries use from --cpus-per-worker."""
    from types import SimpleNamespace

    import torch

    from drfhq_tools.dataset.engines import StageActor, actor_threads
    from drfhq_tools.models import attributes

    assert actor_threads(SimpleNamespace(cpus_per_worker=0.5)) == 1 and actor_threads(SimpleNamespace(cpus_per_worker=3)) == 3
    before = torch.get_num_threads()
    try:
        StageActor({}, "unused", threads=2)
        assert torch.get_num_threads() == 2 and attributes.session_threads() == 2
        assert attributes._session("age-v1").get_session_options().intra_op_num_threads == 2
    finally:
        torch.set_num_threads(before)
        attributes.set_session_threads(1)
    assert attributes._session("age-v1").get_session_options().intra_op_num_threads == 1
