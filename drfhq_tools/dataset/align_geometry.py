"""FFHQ alignment geometry as pure functions on landmark arrays (NVlabs ffhq-dataset, recreate_aligned_images).

The quad is built from the eyes and mouth of the 68 iBUG landmarks; everything else in alignment is
resampling. Coordinates are (x, y) in source pixels, pixel centres at integer positions.
"""

from __future__ import annotations

import numpy as np


def eye_mouth_points(landmarks68: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lm = np.asarray(landmarks68, dtype=np.float64).reshape(68, 2)
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    mouth_left, mouth_right = lm[48], lm[54]
    return eye_left, eye_right, mouth_left, mouth_right


def ffhq_quad(landmarks68: np.ndarray) -> tuple[np.ndarray, float]:
    """The oriented crop square (4 x 2, corners TL, BL, BR, TR) and its side length in source pixels."""
    eye_left, eye_right, mouth_left, mouth_right = eye_mouth_points(landmarks68)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def quad_to_output_affine(quad: np.ndarray, output_size: int) -> np.ndarray:
    """2x3 matrix mapping source (x, y) to aligned-output coordinates (continuous, pixel edges at 0 and size).

    The quad's TL corner goes to (0, 0), TR to (size, 0), BL to (0, size), as PIL's QUAD transform does.
    """
    tl, bl, br, tr = np.asarray(quad, dtype=np.float64)
    ex = (tr - tl) / output_size   # source step per output pixel along x
    ey = (bl - tl) / output_size
    forward = np.array([[ex[0], ey[0], tl[0]], [ex[1], ey[1], tl[1]], [0, 0, 1.0]])  # output -> source
    inverse = np.linalg.inv(forward)
    return inverse[:2]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def canonical_eye_positions(landmarks68: np.ndarray, output_size: int) -> np.ndarray:
    """Where the two eye centres land in the aligned output (continuous coordinates), 2 x 2."""
    quad, _ = ffhq_quad(landmarks68)
    eye_left, eye_right, _, _ = eye_mouth_points(landmarks68)
    return apply_affine(quad_to_output_affine(quad, output_size), np.stack([eye_left, eye_right]))


def head_pose_from_landmarks(landmarks68: np.ndarray) -> tuple[float, float]:
    """Approximate (yaw, roll) in degrees from 2-D landmarks.

    Roll is the angle of the eye line. Yaw compares the nose tip's distance to the two jaw ends
    (points 0 and 16): arcsin of their normalised difference. Positive yaw: the face turns to the image's
    left side (its own right). A frontal face gives about 0; a profile approaches +-90.
    """
    lm = np.asarray(landmarks68, dtype=np.float64).reshape(68, 2)
    eye_left, eye_right, _, _ = eye_mouth_points(lm)
    d = eye_right - eye_left
    roll = float(np.degrees(np.arctan2(d[1], d[0])))
    axis = d / (np.hypot(*d) + 1e-9)
    nose = lm[30]
    left = float(np.dot(nose - lm[0], axis))
    right = float(np.dot(lm[16] - nose, axis))
    ratio = (right - left) / max(left + right, 1e-9)
    yaw = float(np.degrees(np.arcsin(np.clip(ratio, -1.0, 1.0))))
    return yaw, roll


def head_pitch_ratio(landmarks68: np.ndarray) -> float:
    """Where the nose tip sits between the eye line and the chin, measured across the eye line: about 0.29
    for frontal photos (the fixtures' median), larger when the head tilts down, smaller when it tilts up."""
    lm = np.asarray(landmarks68, dtype=np.float64).reshape(68, 2)
    eye_left, eye_right, _, _ = eye_mouth_points(lm)
    d = eye_right - eye_left
    across = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    middle = (eye_left + eye_right) / 2
    return float(np.dot(lm[30] - middle, across) / max(float(np.dot(lm[8] - middle, across)), 1e-9))
