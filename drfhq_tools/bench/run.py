"""`drfhq bench`: features once per image, per-image values, then every metric for every slice.

Flow: dataset rows (status ok) -> each method's outputs -> Inception features of the real set and of
every output, identity embeddings and LPIPS of (input, output) pairs, all through the feature cache
-> per_image values -> FID / KID / mean-with-interval per (method, slice, group) -> results tables in
DuckDB and Parquet -> rich table and HTML report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from ..dataset.decode import IMAGE_SUFFIXES
from ..dataset.rows import dataset_rows
from ..errors import DrfhqError
from ..io import FolderLock, atomic_write_json, sha256_file
from ..models.identity import identity_network
from ..models.inception import PREPROCESSING as INCEPTION_PREP
from ..models.inception import InceptionFeatures
from ..models.lpips_net import LpipsDistance
from ..models.weights import home
from .cache import FeatureCache
from .config import BenchConfig
from .methods import BUILTIN_METHODS, GENERATOR_METHODS, MethodOutputs, lab_statistics, match_folder, parse_baselines
from .metrics import FrechetReference, bootstrap_summary, cosine_similarity, kernel_inception_distance


@dataclass
class BenchRun:
    run_id: str
    out: Path
    results: list[dict]
    per_image: list[dict]
    methods: list[MethodOutputs]
    counters: dict = field(default_factory=dict)


def _load_image(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


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
    """Networks built on first use, with every value routed through the cache."""

    def __init__(self, config: BenchConfig, cache: FeatureCache):
        self.config, self.cache = config, cache
        self._inception = self._identity = self._lpips = None
        self._hashes: dict[str, str] = {}

    def sha(self, path) -> str:
        path = str(path)
        if path not in self._hashes:
            self._hashes[path] = sha256_file(path)
        return self._hashes[path]

    @property
    def inception(self) -> InceptionFeatures:
        if self._inception is None:
            self._inception = InceptionFeatures(self.config.device)
        return self._inception

    @property
    def identity(self):
        if self._identity is None:
            self._identity = identity_network(self.config.identity, self.config.device)
        return self._identity

    @property
    def lpips(self) -> LpipsDistance:
        if self._lpips is None:
            self._lpips = LpipsDistance(self.config.lpips_net, self.config.device, self.config.lpips_random)
        return self._lpips

    def _cached(self, keys: list[str], compute, items: list, progress=None, label="") -> list[np.ndarray]:
        found = self.cache.get_many(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        step = self.config.batch_size
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            values = compute([items[i] for i in chunk])
            fresh = {keys[i]: np.asarray(v) for i, v in zip(chunk, values)}
            self.cache.put_many(fresh)
            found.update(fresh)
            if progress:
                progress(min(start + step, len(todo)), len(todo))
        return [found[k] for k in keys]

    def inception_features(self, paths: list[Path], progress=None) -> np.ndarray:
        net_key = self._inception_key()
        keys = [FeatureCache.key("inception", net_key, INCEPTION_PREP, self.sha(p)) for p in paths]
        values = self._cached(keys, lambda chunk: self.inception([_load_image(p) for p in chunk]), paths, progress)
        return np.stack(values) if values else np.zeros((0, 2048))

    def _inception_key(self) -> str:
        # the weights hash is part of every key; resolving it does not load the network
        from ..models.weights import resolve, try_resolve

        model = try_resolve("inception-nvidia") or resolve("inception-fid")
        self.inception_sha256 = model.sha256
        return model.sha256

    def identity_embeddings(self, paths: list[Path], rows: list[dict]) -> np.ndarray:
        net = self.identity
        keys = [FeatureCache.key("identity", net.name, net.weights_sha256, net.preprocessing, self.sha(p),
                                 hashlib.sha256(np.round(r["aligned_lm68"], 2).tobytes()).hexdigest()[:16])
                for p, r in zip(paths, rows)]
        items = list(zip(paths, rows))
        values = self._cached(keys, lambda chunk: net([_load_image(p) for p, _ in chunk], [r["aligned_lm5"] for _, r in chunk],
                                                      [r["aligned_lm68"] for _, r in chunk]), items)
        return np.stack(values)

    def lpips_values(self, inputs: list[Path], outputs: list[Path]) -> np.ndarray:
        net = self.lpips
        keys = [FeatureCache.key("lpips", net.name, net.weights_sha256, "pm1-full-res", self.sha(a), self.sha(b))
                for a, b in zip(inputs, outputs)]
        items = list(zip(inputs, outputs))
        values = self._cached(keys, lambda chunk: net([_load_image(a) for a, _ in chunk], [_load_image(b) for _, b in chunk]), items)
        return np.asarray([float(v) for v in values])


def _groups(rows: list[dict], config: BenchConfig) -> list[tuple[str, str, list[str]]]:
    """(slice, group, ids) for the overall set, each slice column and each crossing."""
    out = [("all", "all", [r["id"] for r in rows])]
    for spec in [*config.slices, *config.cross]:
        columns = spec.split("*")
        groups: dict[str, list[str]] = {}
        for r in rows:
            groups.setdefault("|".join(str(r.get(c) or "unknown") for c in columns), []).append(r["id"])
        out += [(spec, g, ids) for g, ids in sorted(groups.items())]
    return out


def run_bench(config: BenchConfig, progress=None, log=print) -> BenchRun:
    config.validate()
    dataset, out = Path(config.dataset), Path(config.out)
    methods_spec = parse_baselines(config.baselines)
    rows, size = dataset_rows(dataset, config.limit)
    out.mkdir(parents=True, exist_ok=True)
    created = dt.datetime.now(dt.timezone.utc)
    run_id = created.strftime("%Y%m%dT%H%M%S") + "-" + hashlib.sha256(json.dumps(
        {"c": str(config), "t": created.isoformat()}).encode()).hexdigest()[:6]
    with FolderLock(out, "drfhq bench"):
        cache = FeatureCache(config.cache or home() / "cache" / "bench.sqlite")
        ex = _Extractors(config, cache)
        reals = real_images(Path(config.real), out, size, progress, log)
        if len(reals) < 2:
            raise DrfhqError(f"{config.real}: fewer than two usable real images")
        log(f"real set: {len(reals)} images; dataset: {len(rows)} images at {size}px")
        real_feats = ex.inception_features(reals, progress)
        reference = FrechetReference(real_feats)
        lab_cache = {}

        def real_lab_stats():
            if "stats" not in lab_cache:
                lab_cache["stats"] = lab_statistics([_load_image(p) for p in reals[:500]])
            return lab_cache["stats"]

        context = {"real_lab_stats": real_lab_stats, "config": config, "size": size, "progress": progress, "log": log}
        by_id = {r["id"]: r for r in rows}
        methods: list[MethodOutputs] = []
        for name, folder in methods_spec:
            if folder is None:
                paths = {**BUILTIN_METHODS, **GENERATOR_METHODS}[name](rows, out / "methods" / name, context)
                provenance = context.get("provenance", {}).get(name)
                methods.append(MethodOutputs(name, paths, [r["id"] for r in rows if r["id"] not in paths], [], [],
                                             config.ckpt if provenance else "built-in", provenance))
            else:
                methods.append(match_folder(name, Path(folder), rows, size))
            m = methods[-1]
            if m.missing or m.wrong_size or m.extra:
                log(f"[yellow]{name}: {len(m.paths)} of {len(rows)} outputs usable; missing {len(m.missing)} "
                    f"{m.missing[:5]}, wrong size {len(m.wrong_size)} {m.wrong_size[:5]}, extra {len(m.extra)} {m.extra[:5]}; "
                    "its metrics use the rows it has[/]")
        created_at = created.isoformat(timespec="seconds")
        per_image, results = [], []
        groups = _groups(rows, config)
        for method in methods:
            ids = [r["id"] for r in rows if r["id"] in method.paths]
            if len(ids) < 2:
                log(f"[red]{method.name}: fewer than two outputs; skipped[/]")
                continue
            outputs = [method.paths[i] for i in ids]
            inputs = [Path(by_id[i]["image_file"]) for i in ids]
            feats = dict(zip(ids, ex.inception_features(outputs, progress)))
            id_in = ex.identity_embeddings(inputs, [by_id[i] for i in ids])
            id_out = ex.identity_embeddings(outputs, [by_id[i] for i in ids])
            cos = dict(zip(ids, cosine_similarity(id_in, id_out)))
            lp = dict(zip(ids, ex.lpips_values(inputs, outputs)))
            id_net, lp_net = ex.identity, ex.lpips
            lpips_metric = "lpips_random" if config.lpips_random else "lpips"
            for i in ids:
                per_image.append(dict(run_id=run_id, method=method.name, image_id=i, metric="identity_cosine",
                                      value=float(cos[i]), extractor=id_net.name, weights_sha256=id_net.weights_sha256))
                per_image.append(dict(run_id=run_id, method=method.name, image_id=i, metric=lpips_metric,
                                      value=float(lp[i]), extractor=lp_net.name, weights_sha256=lp_net.weights_sha256))
            available = set(ids)
            for slice_name, group, group_ids in groups:
                members = [i for i in group_ids if i in available]
                n = len(members)
                base = dict(run_id=run_id, method=method.name, slice=slice_name, grp=group, n=n, created_at=created_at,
                            n_missing=len(group_ids) - n)
                inc = dict(extractor=InceptionFeatures.name, weights_sha256=ex.inception_sha256)
                if n >= 2:
                    block = np.stack([feats[i] for i in members])
                    fid = reference.distance(block)
                    kid = kernel_inception_distance(block, real_feats, config.kid_subsets, config.kid_subset_size, config.seed)
                    results.append({**base, **inc, "metric": "fid", "value": fid, "std": None, "ci_low": None, "ci_high": None,
                                    "protocol": f"fid_clean_n{n}_vs_real{len(reals)}",
                                    "flag": "small_n" if n < config.fid_min_n else None})
                    results.append({**base, **inc, "metric": "kid", "value": kid.mean, "std": kid.std, "ci_low": None, "ci_high": None,
                                    "protocol": f"kid_clean_subsets{kid.subsets}x{kid.subset_size}_seed{config.seed}",
                                    "flag": "subset_reduced" if kid.subset_size < config.kid_subset_size else None})
                else:
                    for metric in ("fid", "kid"):
                        results.append({**base, **inc, "metric": metric, "value": None, "std": None, "ci_low": None,
                                        "ci_high": None, "protocol": None, "flag": "too_few"})
                for metric, values, net in (("identity_cosine", cos, id_net), (lpips_metric, lp, lp_net)):
                    s = bootstrap_summary(np.array([values[i] for i in members]), config.bootstrap, config.seed)
                    results.append({**base, "metric": metric, "value": s.mean if n else None, "std": s.std if n > 1 else None,
                                    "ci_low": s.ci_low if n > 1 else None, "ci_high": s.ci_high if n > 1 else None,
                                    "extractor": net.name, "weights_sha256": net.weights_sha256,
                                    "protocol": f"mean_bootstrap{config.bootstrap}_seed{config.seed}",
                                    "flag": None if n > 1 else ("too_few" if n == 0 else "single")})
        counters = {"inception_calls": ex._inception.calls if ex._inception else 0,
                    "inception_images": ex._inception.images if ex._inception else 0,
                    "identity_calls": ex._identity.calls if ex._identity else 0,
                    "lpips_calls": ex._lpips.calls if ex._lpips else 0}
        cache.close()
        run = BenchRun(run_id, out, results, per_image, methods, counters)
        from .store import write_run

        write_run(run, rows, config)
        from ..report.bench_report import write_html_report

        write_html_report(run, rows, config)
        atomic_write_json(out / f"bench-{run_id}.json", {"run_id": run_id, "config": config, "counters": counters,
                                                          "real_images": len(reals), "dataset_rows": len(rows),
                                                          "methods": [{"name": m.name, "source": m.source, "outputs": len(m.paths),
                                                                       "provenance": m.provenance, "missing": m.missing, "wrong_size": m.wrong_size,
                                                                       "extra": m.extra} for m in methods]})
    return run
