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
