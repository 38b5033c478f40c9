"""`drfhq bench`: features once per image, per-image values, then every metric for every slice.

Flow: dataset rows (status ok) -> each method's outputs (external folders matched, and resized to the
dataset's size, before anything is computed) -> through the feature cache, with images decoded by
DataLoader workers: Inception features of the real set and of every output; every render's and
output's face found again (68 landmarks); identity embeddings of each face where it was found; LPIPS
and skin CIEDE2000 of (render, output) pairs -> per_image values -> per (method, slice, group): FID,
FID-infinity, KID, precision / recall / density / coverage, and each per-image metric's mean with a
95% interval (clusters of identity_id resampled when the dataset has them) -> results tables in DuckDB
and Parquet -> rich table and HTML report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from ..dataset.decode import IMAGE_SUFFIXES
from ..dataset.paste import skin_mask
from ..dataset.rows import dataset_rows
from ..errors import DrfhqError
from ..io import FolderLock, atomic_write_json
from ..models.identity import IDENTITY_SHORT, identity_names, identity_network
from ..models.inception import PREPROCESSING as INCEPTION_PREP
from ..models.inception import InceptionFeatures
from ..models.lpips_net import LpipsDistance
from ..models.weights import home
from .cache import FeatureCache
from .config import BenchConfig
from .loading import batches, load_inception_input, load_pair, load_rgb
from .methods import BUILTIN_METHODS, GENERATOR_METHODS, MethodOutputs, lab_statistics, match_folder, parse_baselines
from .metrics import (FrechetReference, cluster_bootstrap_summary, cosine_similarity, fid_infinity, kernel_inception_distance,
                      landmark_nme, mean_delta_e, prdc, real_balls_holding)
from .slices import slice_groups


@dataclass
class BenchRun:
    run_id: str
    out: Path
    results: list[dict]
    per_image: list[dict]
    methods: list[MethodOutputs]
    counters: dict = field(default_factory=dict)


def real_images(real: Path, out: Path, size: int, progress, log=print) -> list[Path]:
    """A dataset's ok images, a folder of aligned (square, equal-sized) images, or raw photos aligned now."""
    if (real / "manifest.parquet").is_file():
        table = pq.read_table(real / "manifest.parquet", columns=["status", "image_path"]).to_pylist()
        return [real / r["image_path"] for r in table if r["status"] == "ok"]
    files = sorted(p for p in real.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DrfhqError(f"{real}: no images")
    sizes = set()
    for p in files[:64]:
        with Image.open(p) as img:
            sizes.add(img.size)
    if len(sizes) == 1 and next(iter(sizes))[0] == next(iter(sizes))[1]:
        return files
    # Raw photos: align them exactly as the renders were, once, inside the run folder.
    log(f"{real}: images are not all aligned squares of one size; aligning them into {out / 'real_dataset'}")
    from ..dataset.build import build_dataset
    from ..dataset.config import BuildConfig

    built = build_dataset(BuildConfig(src=str(real), out=str(out / "real_dataset"), size=size, predict_attributes=False),
                          progress=progress)
    return [built.out / r["image_path"] for r in built.manifest.to_pylist() if r["status"] == "ok"]


class _Extractors:
    """Networks built on first use, with every value routed through the cache; images decoded by
    DataLoader workers."""

    def __init__(self, config: BenchConfig, cache: FeatureCache):
        self.config, self.cache = config, cache
        self._inception = self._lpips = None
        self._identity: dict[str, object] = {}
        self._hashes: dict[str, str] = {}
        self.counts = {"landmarks": 0, "skin_delta_e": 0}     # values computed (not cached)
        self._ray = self._actors = None                       # a Ray session and actor pool once --engine ray computes
        self.actor_pids: set[int] = set()

    def hash_all(self, paths) -> None:
        """Content hashes of many files at once (cached per file state in the feature cache)."""
        todo = list(dict.fromkeys(str(p) for p in paths if str(p) not in self._hashes))
        self._hashes.update(zip(todo, self.cache.file_sha256(todo)))

    def sha(self, path) -> str:
        path = str(path)
        if path not in self._hashes:
            self.hash_all([path])
        return self._hashes[path]

    @property
    def inception(self) -> InceptionFeatures:
        if self._inception is None:
            self._inception = InceptionFeatures(self.config.device)
        return self._inception

    def identity(self, name: str):
        if name not in self._identity:
            self._identity[name] = identity_network(name, self.config.device)
        return self._identity[name]

    @property
    def lpips(self) -> LpipsDistance:
        if self._lpips is None:
            self._lpips = LpipsDistance(self.config.lpips_net, self.config.device, self.config.lpips_random)
        return self._lpips

    def _cached(self, keys: list[str], items: list, kind: str, params: dict | None = None, progress=None,
                precision: str = "float32", label: str = "features") -> list[np.ndarray]:
        """Values for keys: from the cache, or computed for the missing ones (each distinct key once),
        `feature_functions(kind)` on batches: here with DataLoader workers decoding, or on Ray actors."""
        found = self.cache.get_many(keys)
        todo = list({k: i for i, k in reversed(list(enumerate(keys))) if k not in found}.values())[::-1]
        if progress and not todo:
            progress(len(keys), len(keys), f"{label} (all {len(keys)} cached)")
        if kind in self.counts:
            self.counts[kind] += len(todo)
        if self.config.engine == "ray":
            computed = self._ray_batches(kind, params or {}, [items[i] for i in todo])
        else:
            load, compute = feature_functions(self, kind, params or {})
            computed = (compute(loaded) for loaded in batches([items[i] for i in todo], load, self.config.batch_size,
                                                              self.config.workers))
        done = 0
        for values in computed:
            chunk = todo[done:done + len(values)]
            fresh = {keys[i]: np.asarray(v) for i, v in zip(chunk, values)}
            self.cache.put_many(fresh, self.config.device, precision)
            found.update(fresh)
            done += len(values)
            if progress:
                progress(done, len(todo), label)
        return [found[k] for k in keys]

    def _ray_batches(self, kind: str, params: dict, items: list):
        """The same computation on a pool of Ray actors, in order. The pool lives for the whole bench, so
        each actor builds each network once (bench's values come in phases, each needing the last)."""
        from ..dataset.engines import ray_session

        if not items:
            return
        if self._ray is None:
            self._ray = ray_session(self.config)
            ray = self._ray.__enter__()
            options = self._ray.actor_options()
            remote = ray.remote(FeatureActor).options(num_cpus=options["num_cpus"], num_gpus=options["num_gpus"] or 0,
                                                      resources=options["resources"] or {})
            from ray.util import ActorPool

            self._actors = ActorPool([remote.remote(self.config) for _ in range(options["concurrency"])])
        size = self.config.batch_size
        chunks = [json.dumps([_to_json(i) for i in items[start:start + size]]) for start in range(0, len(items), size)]
        for values, pid in self._actors.map(lambda actor, chunk: actor.compute.remote(kind, json.dumps(params), chunk), chunks):
            self.actor_pids.add(pid)
            yield [_from_json(v) for v in json.loads(values)]

    def close(self) -> None:
        if self._ray is not None:
            self._actors = None
            self._ray.__exit__(None, None, None)
            self._ray = None

    def inception_features(self, paths: list[Path], progress=None) -> np.ndarray:
        net_key = self._inception_key()
        self.hash_all(paths)
        keys = [FeatureCache.key("inception", net_key, INCEPTION_PREP, self.sha(p)) for p in paths]
        values = self._cached(keys, paths, "inception", progress=progress, label="Inception features")
        return np.stack(values) if values else np.zeros((0, 2048))

    def _inception_key(self) -> str:
        # the weights hash is part of every key; resolving it does not load the network
        from ..models.weights import resolve, try_resolve

        model = try_resolve("inception-nvidia") or resolve("inception-fid")
        self.inception_sha256 = model.sha256
        return model.sha256

    def landmarks(self, paths: list[Path], progress=None) -> np.ndarray:
        """N x 73 x 2: each image's face found again (68 points, then dlib's 5); NaN where none is found."""
        from ..models import faces

        self.hash_all(paths)
        keys = [FeatureCache.key("landmarks", faces.REDETECT_PROTOCOL, self.landmark_weights()[:16], self.sha(p)) for p in paths]

        values = self._cached(keys, paths, "landmarks", progress=progress, precision="float64", label="faces found again")
        return np.stack(values) if values else np.zeros((0, 73, 2))

    @staticmethod
    def landmark_weights() -> str:
        from ..models.faces import model_names
        from ..models.weights import resolve

        return hashlib.sha256("".join(resolve(n).sha256 for n in model_names("hog+cnn")).encode()).hexdigest()

    def identity_embeddings(self, name: str, paths: list[Path], lm5: np.ndarray, lm68: np.ndarray) -> np.ndarray:
        """N x D embeddings from the faces at the given landmarks; NaN rows where the landmarks are NaN."""
        net = self.identity(name)
        ok = [i for i in range(len(paths)) if np.isfinite(lm68[i]).all()]
        keys = [FeatureCache.key("identity", net.name, net.weights_sha256, net.preprocessing, self.sha(paths[i]),
                                 hashlib.sha256(np.round(lm68[i], 2).tobytes() + np.round(lm5[i], 2).tobytes()).hexdigest()[:16])
                for i in ok]
        items = [(paths[i], lm5[i], lm68[i]) for i in ok]
        values = self._cached(keys, items, "identity", {"name": name})
        dim = len(values[0]) if values else 128
        out = np.full((len(paths), dim), np.nan)
        for i, v in zip(ok, values):
            out[i] = v
        return out

    def lpips_values(self, inputs: list[Path], outputs: list[Path]) -> np.ndarray:
        net = self.lpips
        keys = [FeatureCache.key("lpips", net.name, net.weights_sha256, "pm1-full-res", self.sha(a), self.sha(b))
                for a, b in zip(inputs, outputs)]
        values = self._cached(keys, list(zip(inputs, outputs)), "lpips")
        return np.asarray([float(v) for v in values])

    def skin_delta_e(self, inputs: list[Path], outputs: list[Path], reference68: np.ndarray, size: int) -> np.ndarray:
        """Mean CIEDE2000 over the render's skin region (from its landmarks), at most 256 px."""
        side = min(size, DELTA_E_SIDE)
        keys = [FeatureCache.key("skin_delta_e", DELTA_E_PROTOCOL.format(side=side), self.sha(a), self.sha(b),
                                 hashlib.sha256(np.round(lm, 2).tobytes()).hexdigest()[:16])
                for a, b, lm in zip(inputs, outputs, reference68)]
        items = [(a, b, (lm + 0.5) * side / size - 0.5, side) for a, b, lm in zip(inputs, outputs, reference68)]   # pixel centres
        return np.asarray([float(v) for v in self._cached(keys, items, "skin_delta_e", precision="float64")])


def feature_functions(ex: _Extractors, kind: str, params: dict):
    """(load, compute) of one kind of per-image value: `load` decodes one item (in a DataLoader worker
    or an actor), `compute` turns a batch of loads into values. dlib's detection and the skin colour
    difference run inside `load`, where the CPUs are."""
    if kind == "inception":
        return load_inception_input, lambda chunk: ex.inception.forward_resized(chunk)
    if kind == "landmarks":
        return _load_and_find_landmarks, lambda chunk: chunk
    if kind == "identity":
        net = ex.identity(params["name"])
        return _load_with_landmarks, lambda chunk: net([c[0] for c in chunk], [c[1] for c in chunk], [c[2] for c in chunk])
    if kind == "lpips":
        net = ex.lpips
        return load_pair, lambda chunk: net([a for a, _ in chunk], [b for _, b in chunk])
    if kind == "skin_delta_e":
        return _skin_delta_e_of_pair, lambda chunk: chunk
    raise ValueError(f"unknown feature kind {kind}")


class FeatureActor:
    """A Ray actor for bench: its networks are built on first use and kept for every batch of the run."""

    def __init__(self, config: BenchConfig):
        import torch

        from ..dataset.engines import actor_threads

        torch.set_num_threads(actor_threads(config))    # the actor's CPUs, not the node's
        self.ex = _Extractors(config, cache=None)

    def compute(self, kind: str, params: str, items: str) -> tuple[str, int]:
        """JSON items -> (JSON values, this actor's process id)."""
        load, compute = feature_functions(self.ex, kind, json.loads(params))
        computed = compute([load(_from_json(i)) for i in json.loads(items)])
        return json.dumps([_to_json(np.asarray(v)) for v in computed]), os.getpid()


def _to_json(value):
    """Items and values as JSON, exactly (arrays keep their dtype; floats print to full precision)."""
    if isinstance(value, np.ndarray):
        return {"array": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value) if isinstance(value, Path) else value


def _from_json(value):
    if isinstance(value, dict):
        return np.asarray(value["array"], dtype=value["dtype"])
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    return value


DELTA_E_SIDE = 256
DELTA_E_PROTOCOL = "ciede2000-pixelwise-{side}px-area-skin-from-render-landmarks"


def _load_with_landmarks(item):
    return load_rgb(item[0]), item[1], item[2]


def _skin_delta_e_of_pair(item) -> np.float64:
    a, b, lm, side = item
    resize = lambda rgb: rgb if rgb.shape[0] == side else np.asarray(Image.fromarray(rgb).resize((side, side), Image.BOX))
    render, output = resize(load_rgb(a)), resize(load_rgb(b))
    return np.float64(mean_delta_e(render, output, skin_mask(lm, render.shape[:2])))


def _load_and_find_landmarks(path) -> np.ndarray:
    from ..models import faces

    found = faces.redetect_landmarks(load_rgb(path))
    return found if found is not None else np.full((73, 2), np.nan)


def _per_image_summary(values: np.ndarray, clusters, config: BenchConfig) -> tuple[dict, int]:
    """(value, std, ci_low, ci_high, flag) of a slice's finite per-image values, and how many were not finite."""
    finite = np.isfinite(values)
    kept = values[finite]
    n = len(kept)
    summary = cluster_bootstrap_summary(kept, None if clusters is None else [c for c, f in zip(clusters, finite) if f],
                                        config.bootstrap, config.seed)
    row = {"value": summary.mean if n else None, "std": summary.std if n > 1 else None,
           "ci_low": summary.ci_low if n > 1 else None, "ci_high": summary.ci_high if n > 1 else None,
           "flag": None if n > 1 else ("too_few" if n == 0 else "single")}
    return row, int((~finite).sum())


def run_bench(config: BenchConfig, progress=None, log=print) -> BenchRun:
    config.validate()
    dataset, out = Path(config.dataset), Path(config.out)
    methods_spec = parse_baselines(config.baselines)
    rows, size = dataset_rows(dataset, config.limit)
    identity_choices = identity_names(config.identity)
    out.mkdir(parents=True, exist_ok=True)
    created = dt.datetime.now(dt.timezone.utc)
    run_id = created.strftime("%Y%m%dT%H%M%S") + "-" + hashlib.sha256(json.dumps(
        {"c": str(config), "t": created.isoformat()}).encode()).hexdigest()[:6]
    with FolderLock(out, "drfhq bench"):
        cache = FeatureCache(config.cache or home() / "cache" / "bench.sqlite")
        ex = _Extractors(config, cache)
        # external folders first: a folder with nothing usable stops the run before anything is computed
        external = {name: match_folder(name, Path(folder), rows, size, config.resize, out / "methods" / name / "resized",
                                       lambda paths: [ex.sha(p) for p in paths])
                    for name, folder in methods_spec if folder is not None}
        reals = real_images(Path(config.real), out, size, progress, log)
        if len(reals) < 2:
            raise DrfhqError(f"{config.real}: fewer than two usable real images")
        log(f"real set: {len(reals)} images; dataset: {len(rows)} images at {size}px")
        real_feats = ex.inception_features(reals, progress)
        reference = FrechetReference(real_feats)
        lab_cache = {}

        def real_lab_stats():
            if "stats" not in lab_cache:
                lab_cache["stats"] = lab_statistics([load_rgb(p) for p in reals[:500]])
            return lab_cache["stats"]

        context = {"real_lab_stats": real_lab_stats, "config": config, "size": size, "progress": progress, "log": log}
        by_id = {r["id"]: r for r in rows}
        has_identities = any(r.get("identity_id") for r in rows)
        cluster_of = {r["id"]: (r.get("identity_id") or f"row:{r['id']}") for r in rows} if has_identities else None
        interval = (f"mean_cluster_bootstrap{config.bootstrap}_identity_id_seed{config.seed}" if has_identities
                    else f"mean_bootstrap{config.bootstrap}_seed{config.seed}")
        methods: list[MethodOutputs] = []
        for name, folder in methods_spec:
            if folder is None:
                paths = {**BUILTIN_METHODS, **GENERATOR_METHODS}[name](rows, out / "methods" / name, context)
                provenance = context.get("provenance", {}).get(name)
                methods.append(MethodOutputs(name, paths, [r["id"] for r in rows if r["id"] not in paths], {}, [],
                                             config.ckpt if provenance else "built-in", provenance))
            else:
                methods.append(external[name])
            m = methods[-1]
            if m.missing or m.resized or m.extra or m.unreadable:
                log(f"[yellow]{name}: {len(m.paths)} of {len(rows)} outputs usable; missing {len(m.missing)} {m.missing[:5]}; "
                    f"resized to {size}px with {config.resize}: {len(m.resized)}; unreadable {len(m.unreadable)} {m.unreadable[:3]}; "
                    f"matching no dataset row (left out): {len(m.extra)} {m.extra[:5]}[/]")
            if len(m.paths) < 2:
                raise DrfhqError(f"{name}: fewer than two outputs ({len(m.paths)} of {len(rows)} rows)")
        created_at = created.isoformat(timespec="seconds")
        per_image, results = [], []
        groups = slice_groups(rows, [*config.slices, *config.cross])
        lpips_metric = "lpips_random" if config.lpips_random else "lpips"
        inc = dict(extractor=InceptionFeatures.name)
        landmark_extractor = dict(extractor=f"dlib-68pt ({faces_protocol()})", weights_sha256=ex.landmark_weights())   # all three dlib files
        for method in methods:
            ids = [r["id"] for r in rows if r["id"] in method.paths]
            outputs = [method.paths[i] for i in ids]
            inputs = [Path(by_id[i]["image_file"]) for i in ids]
            ex.hash_all([*inputs, *outputs])
            feats = dict(zip(ids, ex.inception_features(outputs, progress)))
            inc["weights_sha256"] = ex.inception_sha256
            # geometry: every face found again, the render's as well (one detector on both sides, so an
            # unchanged image scores exactly 0); a render it misses keeps the dataset's own landmarks
            lm_in, lm_out = ex.landmarks(inputs, progress), ex.landmarks(outputs, progress)
            dataset_lm = np.stack([np.concatenate([by_id[i]["aligned_lm68"], by_id[i]["aligned_lm5"]]) for i in ids])
            lm_ref = np.where(np.isfinite(lm_in).all(axis=(1, 2))[:, None, None], lm_in, dataset_lm)
            found = np.isfinite(lm_out).all(axis=(1, 2))
            nme = np.array([landmark_nme(lm_ref[k, :68], lm_out[k, :68]) if found[k] else np.nan for k in range(len(ids))])
            delta_e = ex.skin_delta_e(inputs, outputs, lm_ref[:, :68], size)
            if config.identity_crop == "output":
                id_lm_in, id_lm_out, id_protocol = lm_ref, lm_out, "faces_redetected_on_each_image"
            else:
                id_lm_in = id_lm_out = dataset_lm
                id_protocol = "render_landmarks_on_both"
            per_metric = {}          # metric -> (values by id, extractor fields, protocol)
            for k, name in enumerate(identity_choices):
                net = ex.identity(name)
                e_in = ex.identity_embeddings(name, inputs, id_lm_in[:, 68:], id_lm_in[:, :68])
                e_out = ex.identity_embeddings(name, outputs, id_lm_out[:, 68:], id_lm_out[:, :68])
                metric = "identity_cosine" if k == 0 else f"identity_cosine_{IDENTITY_SHORT[name]}"
                per_metric[metric] = (dict(zip(ids, cosine_similarity(e_in, e_out))),
                                      dict(extractor=net.name, weights_sha256=net.weights_sha256), id_protocol)
            lp_net = ex.lpips
            per_metric[lpips_metric] = (dict(zip(ids, ex.lpips_values(inputs, outputs))),
                                        dict(extractor=lp_net.name, weights_sha256=lp_net.weights_sha256), "full_resolution_pm1")
            if len(real_feats) > config.prdc_k:     # precision and density: per output, against the fixed real balls
                held = real_balls_holding(real_feats, np.stack([feats[i] for i in ids]), config.prdc_k)
                prdc_protocol = f"prdc_k{config.prdc_k}_inception_vs_real{len(real_feats)}"
                per_metric["precision"] = (dict(zip(ids, (held > 0).astype(np.float64))), inc, prdc_protocol)
                per_metric["density"] = (dict(zip(ids, held / config.prdc_k)), inc, prdc_protocol)
            per_metric["landmark_nme"] = (dict(zip(ids, nme)), landmark_extractor, "nme_68pt_inter_ocular_outer_corners_redetected")
            # the share of outputs in which a face is found again: identity, NME and colour average over those only,
            # which would flatter a method whose failures are blobs
            per_metric["face_found"] = (dict(zip(ids, found.astype(np.float64))), landmark_extractor, "output_face_redetected")
            per_metric["skin_delta_e"] = (dict(zip(ids, delta_e)), dict(extractor="ciede2000 on dlib-68pt skin", weights_sha256=landmark_extractor["weights_sha256"]),
                                          DELTA_E_PROTOCOL.format(side=min(size, DELTA_E_SIDE)))
            resize_note = f"; outputs resized {config.resize}" if method.resized else ""
            for i in ids:
                flags = [f"resized_from_{method.resized[i]}_{config.resize}"] if i in method.resized else []
                for metric, (values, extractor, _) in per_metric.items():
                    value = float(values[i])
                    flag = flags + (["no_face_found"] if not np.isfinite(value) else [])
                    per_image.append(dict(run_id=run_id, method=method.name, image_id=i, metric=metric,
                                          value=value if np.isfinite(value) else None, flag=";".join(flag) or None, **extractor))
            available = set(ids)
            for slice_name, group, group_ids in groups:
                members = [i for i in group_ids if i in available]
                n = len(members)
                base = dict(run_id=run_id, method=method.name, slice=slice_name, grp=group, n=n, created_at=created_at,
                            n_missing=len(group_ids) - n, n_failed=0)
                results.extend(_set_metric_rows(base, inc, members, feats, real_feats, reference, config, resize_note))
                clusters = [cluster_of[i] for i in members] if cluster_of else None
                for metric, (values, extractor, protocol) in per_metric.items():
                    summary, failed = _per_image_summary(np.array([values[i] for i in members], dtype=np.float64), clusters, config)
                    results.append({**base, **extractor, **summary, "metric": metric, "n": n - failed, "n_failed": failed,
                                    "protocol": f"{protocol};{interval}{resize_note}"})
        ex.close()
        counters = {"inception_calls": ex._inception.calls if ex._inception else 0,
                    "inception_images": ex._inception.images if ex._inception else 0,
                    "identity_calls": sum(net.calls for net in ex._identity.values()),
                    "lpips_calls": ex._lpips.calls if ex._lpips else 0,
                    "landmark_images": ex.counts["landmarks"], "delta_e_pairs": ex.counts["skin_delta_e"],
                    "files_hashed": cache.hashed}
        if config.engine == "ray":      # the networks ran in the actors, so the call counts above stay 0
            counters["ray_actors"] = len(ex.actor_pids)
        cache.close()
        run = BenchRun(run_id, out, results, per_image, methods, counters)
        from .store import write_run

        write_run(run, rows, config)
        from ..report.bench_report import write_html_report

        write_html_report(run, rows, config)
        atomic_write_json(out / f"bench-{run_id}.json", {"run_id": run_id, "config": config, "counters": counters,
                                                          "real_images": len(reals), "dataset_rows": len(rows),
                                                          "methods": [{"name": m.name, "source": m.source, "outputs": len(m.paths),
                                                                       "provenance": m.provenance, "missing": m.missing, "resized": m.resized,
                                                                       "unreadable": m.unreadable, "extra": m.extra} for m in methods]})
    return run


def faces_protocol() -> str:
    from ..models.faces import REDETECT_PROTOCOL

    return REDETECT_PROTOCOL


def _set_metric_rows(base: dict, inc: dict, members: list[str], feats: dict, real_feats: np.ndarray,
                     reference: FrechetReference, config: BenchConfig, note: str) -> list[dict]:
    """FID, FID-infinity, KID, recall and coverage of one slice against the real set (these depend on the
    whole slice; precision and density are per-image values, summarised with the others)."""
    n = len(members)
    empty = {"std": None, "ci_low": None, "ci_high": None}
    metrics = ("fid", "fid_inf", "kid", "recall", "coverage")
    if n < 2:
        return [{**base, **inc, **empty, "metric": m, "value": None, "protocol": None, "flag": "too_few"} for m in metrics]
    block = np.stack([feats[i] for i in members])
    small = "small_n" if n < config.fid_min_n else None
    out = [{**base, **inc, **empty, "metric": "fid", "value": reference.distance(block),
            "protocol": f"fid_clean_n{n}_vs_real{len(real_feats)}{note}", "flag": small}]
    inf = fid_infinity(block, reference, config.fid_inf_points, config.seed)
    out.append({**base, **inc, **empty, "metric": "fid_inf", "value": inf.value if inf else None,
                "protocol": (f"fid_inf_chong_forsyth_{len(inf.sizes)}sizes_{inf.sizes[0]}-{inf.sizes[-1]}_seed{config.seed}{note}"
                             if inf else None), "flag": None if inf else "too_few"})
    kid = kernel_inception_distance(block, real_feats, config.kid_subsets, config.kid_subset_size, config.seed)
    out.append({**base, **inc, **empty, "metric": "kid", "value": kid.mean, "std": kid.std,
                "protocol": f"kid_clean_subsets{kid.subsets}x{kid.subset_size}_seed{config.seed}{note}",
                "flag": "subset_reduced" if kid.subset_size < config.kid_subset_size else None})
    if n > config.prdc_k and len(real_feats) > config.prdc_k:
        p = prdc(real_feats, block, config.prdc_k)
        values, flag = {"recall": p.recall, "coverage": p.coverage}, None
    else:
        values, flag = dict.fromkeys(("recall", "coverage")), "too_few"
    for metric, value in values.items():
        out.append({**base, **inc, **empty, "metric": metric, "value": value, "flag": flag,
                    "protocol": f"prdc_k{config.prdc_k}_inception_vs_real{len(real_feats)}{note}" if value is not None else None})
    return out
