"""Where the per-image stage runs: `local` (this machine's process pool) or `ray` (Ray Data on a cluster).

Both call the same `stages.process_batch` on the same batches and hand each finished batch's records
to `on_done` in the driver, which writes it as one atomic shard: resume, shards and the manifest do
not depend on the engine. Under Ray, each batch is one row of a Ray Dataset mapped by a pool of actors
(`--workers` of them, each with `--cpus-per-worker`, `--gpus-per-worker` and any `--worker-resource`),
so every actor loads its models once. Results come back as JSON text, so Ray never guesses a column
type. A batch that fails is retried (RAY_BATCH_RETRIES times); one that still fails is reported after
every other batch's shard is written, so a rerun redoes only it.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa

from ..errors import DrfhqError
from .schema import RECORD_SCHEMA
from .stages import process_batch

ENGINES = ("local", "ray")
RAY_BATCH_RETRIES = 2
FAIL_HOOK = "DRFHQ_FAIL_BATCH_WITH"    # fault injection for tests: a batch holding this source path raises


def run_local(batches: list[list[dict]], stage: dict, out: Path, workers: int, on_done) -> dict:
    if workers == 1 or len(batches) <= 1:
        for batch in batches:
            on_done(process_batch(batch, stage, str(out)))
        return {"name": "local", "workers": 1}
    # spawn, not fork: a forked child of a process whose torch/OpenMP threads ran can hang
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(process_batch, batch, stage, str(out)) for batch in batches]
        for future in cf.as_completed(futures):
            on_done(future.result())
    return {"name": "local", "workers": workers}


_BYTES_FIELDS = tuple(f.name for f in RECORD_SCHEMA if pa.types.is_binary(f.type) or pa.types.is_fixed_size_binary(f.type))


def records_to_json(records: list[dict]) -> str:
    """Records as JSON for the trip from an actor to the driver: binary fields as hex."""
    return json.dumps([{**r, **{k: r[k].hex() for k in _BYTES_FIELDS if r.get(k) is not None}} for r in records])


def records_from_json(text: str) -> list[dict]:
    return [{**r, **{k: bytes.fromhex(r[k]) for k in _BYTES_FIELDS if r.get(k) is not None}} for r in json.loads(text)]


class StageActor:
    """A Ray actor: the stage's models are loaded on first use and kept for every batch it is given."""

    def __init__(self, stage: dict, out: str, threads: int = 1):
        import torch

        from ..models import attributes

        # the actor's CPUs, not the node's: torch and the onnxruntime sessions (made on first use) alike
        torch.set_num_threads(threads)
        attributes.set_session_threads(threads)
        self.stage, self.out = stage, out

    def __call__(self, batch: dict) -> dict:
        import ray

        node = ray.get_runtime_context().get_node_id()
        records, errors = [], []
        for tasks_json in batch["tasks"]:
            tasks = json.loads(tasks_json)
            try:
                fail = os.environ.get(FAIL_HOOK)
                if fail and any(t["source_path"] == fail for t in tasks):
                    raise RuntimeError(f"{FAIL_HOOK}={fail}: simulated failure")
                records.append(records_to_json(process_batch(tasks, self.stage, self.out)))
                errors.append("")
            except Exception as exc:           # reported to the driver, which retries the batch
                records.append("[]")
                errors.append(f"{type(exc).__name__}: {exc}")
        return {"index": batch["index"], "records": records, "error": errors, "node": [node] * len(records)}


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def worker_resources(specs: tuple[str, ...]) -> dict[str, float]:
    """{"name": amount} from NAME=AMOUNT strings (custom Ray resources each actor needs)."""
    out = {}
    for spec in specs:
        name, _, amount = spec.partition("=")
        try:
            out[name.strip()] = float(amount)
        except ValueError:
            raise DrfhqError(f"--worker-resource {spec}: NAME=AMOUNT, e.g. facegpu=1") from None
        if not name.strip() or out[name.strip()] <= 0:
            raise DrfhqError(f"--worker-resource {spec}: NAME=AMOUNT with an amount above 0")
    return out


def check_engine_options(config) -> None:
    """The engine options of build-dataset and bench (engine, cpus/gpus per worker, worker resources)."""
    if config.engine not in ENGINES:
        raise DrfhqError(f"--engine {config.engine}: choose from {', '.join(ENGINES)}")
    if config.engine == "ray" and not ray_available():
        raise DrfhqError("--engine ray needs Ray: pip install 'drfhq-tools[ray]'")
    if config.cpus_per_worker <= 0 or config.gpus_per_worker < 0:
        raise DrfhqError("--cpus-per-worker must be above 0 and --gpus-per-worker at least 0")
    worker_resources(config.worker_resources)


class ray_session:
    """Ray for one command: the cluster at --ray-address / RAY_ADDRESS, else a local instance started
    here and stopped on exit; resources no node has are refused before any work is sent."""

    def __init__(self, config):
        self.config = config
        self.address = config.ray_address or os.environ.get("RAY_ADDRESS") or None

    def __enter__(self):
        import ray
        import ray.data

        self.started = not ray.is_initialized()
        if self.started:   # no dashboard, no token files in the home folder
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     ignore_reinit_error=True)
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            _check_resources(ray, self.config)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return ray

    def __exit__(self, *exc) -> None:
        import ray

        if self.started:
            ray.shutdown()

    def actor_options(self) -> dict:
        """map_batches options that place each actor: CPUs, GPUs and custom resources."""
        c = self.config
        return {"concurrency": c.workers, "num_cpus": c.cpus_per_worker, "num_gpus": c.gpus_per_worker or None,
                "resources": worker_resources(c.worker_resources) or None}


def actor_threads(config) -> int:
    """Threads an actor's libraries may use: the whole CPUs it reserved, at least one."""
    return max(1, int(config.cpus_per_worker))


def _check_resources(ray, config) -> None:
    """Refuse what no node can give: Ray would otherwise wait for it forever."""
    wanted = {"CPU": config.cpus_per_worker, "GPU": config.gpus_per_worker, **worker_resources(config.worker_resources)}
    best = {}
    for node in ray.nodes():
        if node.get("Alive"):
            for name, amount in node.get("Resources", {}).items():
                best[name] = max(best.get(name, 0.0), amount)
    short = [f"{name}={amount:g} (largest on a node: {best.get(name, 0):g})" for name, amount in wanted.items()
             if amount > 0 and best.get(name, 0.0) < amount]
    if short:
        raise DrfhqError(f"--engine ray: no node of the cluster has {', '.join(short)}; "
                         f"nodes offer {', '.join(f'{k}={v:g}' for k, v in sorted(best.items()) if not k.startswith('node:'))}")


def run_ray(batches: list[list[dict]], stage: dict, out: Path, config, on_done) -> dict:
    import ray.data

    nodes: Counter = Counter()
    session = ray_session(config)
    with session:
        pending = list(range(len(batches)))
        errors: dict[int, str] = {}
        for _attempt in range(1 + RAY_BATCH_RETRIES):
            if not pending:
                break
            items = [{"index": k, "tasks": json.dumps(batches[k])} for k in pending]
            dataset = ray.data.from_items(items, override_num_blocks=len(items))
            mapped = dataset.map_batches(StageActor, fn_constructor_args=(stage, str(out), actor_threads(config)),
                                         batch_size=1,
                                         **session.actor_options())
            pending, errors = [], {}
            for row in mapped.iter_rows():
                if row["error"]:
                    pending.append(int(row["index"]))
                    errors[int(row["index"])] = row["error"]
                    continue
                nodes[row["node"]] += 1
                on_done(records_from_json(row["records"]))
        if pending:
            failed = "; ".join(f"batch of {', '.join(t['source_path'] for t in batches[k][:3])}"
                               f"{' ...' if len(batches[k]) > 3 else ''}: {errors[k]}" for k in pending)
            raise DrfhqError(f"{len(pending)} batch(es) failed after {RAY_BATCH_RETRIES} retries (every other batch is "
                             f"saved; a rerun redoes only these): {failed}")
    address = session.address
    return {"name": "ray", "address": address or "local", "workers": config.workers, "batches_by_node": dict(nodes)}
