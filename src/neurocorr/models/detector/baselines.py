"""Classical detectors as baselines, scored by the same evaluation code as the learned detector.

Each baseline maps a grey image ``(H, W)`` uint8 array to ``{"xy": (N, 2) float64 px, "score":
(N,), "desc": (N, D) float32}`` in neurocorr's pixel convention (pixel centres at integer coordinates).

Conventions converted:
- OpenCV SIFT is built with ``enable_precise_upscale=True``: its doubled first octave then
  maps pixel centres exactly, so ``kp.pt`` is already in our convention.
- OpenCV ORB and AKAZE detect on downsampled levels of size ``round(W / s)`` and report
  ``pt = p_level * s`` (a corner convention); the pixel centre of level coordinate ``p`` is
  ``(p + 0.5) W / W_l - 0.5`` (:func:`_level_to_pixel`). Without it ORB points of levels 1-6 are
  off by 0.1-0.6 px, which decides a figure at 1 px. Checked under exact 90-degree rotations:
  mean offsets are 0.000 px for ORB and < 0.05 px for AKAZE (its sub-pixel fit).
- kornia Harris and Hessian responses are maps on the pixel grid: their peaks (``ops.peaks``)
  are in our convention by construction. They get SIFT descriptors computed at their points.
"""

from __future__ import annotations

from typing import Callable

import cv2
import kornia.feature as KF
import kornia.filters as KFil
import numpy as np
import torch

from neurocorr.errors import ConfigError
from neurocorr.ops.peaks import find_peaks

Features = dict[str, torch.Tensor]
SIFT_ANGLE_SIGN = 1.0  # OpenCV keypoint angle (degrees) = our image-coordinate angle (checked under rot90)


def _to_features(xy: np.ndarray, score: np.ndarray, desc: np.ndarray | None) -> Features:
    out = {"xy": torch.as_tensor(np.asarray(xy, dtype=np.float64).reshape(-1, 2)),
           "score": torch.as_tensor(np.asarray(score, dtype=np.float64).reshape(-1))}
    if desc is not None:
        out["desc"] = torch.as_tensor(np.asarray(desc, dtype=np.float32))
    return out


def _binary_to_float(desc: np.ndarray | None, n: int, bits: int) -> np.ndarray:
    """Packed binary descriptors -> {0, 1} floats, so L2 distance = sqrt(Hamming)."""
    if desc is None:
        return np.zeros((n, bits), np.float32)
    return np.unpackbits(desc, axis=1).astype(np.float32)


def _empty(dim: int = 128) -> Features:
    return _to_features(np.zeros((0, 2)), np.zeros(0), np.zeros((0, dim), np.float32))


def sift(image: np.ndarray, max_points: int = 2000) -> Features:
    det = cv2.SIFT_create(nfeatures=max_points, enable_precise_upscale=True)
    kps, desc = det.detectAndCompute(image, None)
    if not kps:
        return _empty()
    return _to_features([k.pt for k in kps], [k.response for k in kps], desc)


def _level_to_pixel(pt: np.ndarray, s: np.ndarray, width: int, height: int) -> np.ndarray:
    """A point reported as ``p_level * s`` on a level of size ``round(W / s) x round(H / s)``
    (OpenCV's pyramids) -> the pixel-centre position in the full image: ``(p + 0.5) W / W_l - 0.5``."""
    p = pt / s[:, None]
    ratio = np.stack([width / np.round(width / s), height / np.round(height / s)], 1)
    return (p + 0.5) * ratio - 0.5


def orb(image: np.ndarray, max_points: int = 2000, scale_factor: float = 1.2) -> Features:
    det = cv2.ORB_create(nfeatures=max_points, scaleFactor=scale_factor, edgeThreshold=15, patchSize=15)
    kps, desc = det.detectAndCompute(image, None)
    if not kps:
        return _empty(256)
    s = np.array([scale_factor ** k.octave for k in kps])
    xy = _level_to_pixel(np.array([k.pt for k in kps]), s, image.shape[1], image.shape[0])
    return _to_features(xy, [k.response for k in kps], _binary_to_float(desc, len(kps), 256))


def akaze(image: np.ndarray, max_points: int = 2000, threshold: float = 1e-4) -> Features:
    det = cv2.AKAZE_create(threshold=threshold)
    kps, desc = det.detectAndCompute(image, None)
    if not kps:
        return _empty(488)
    order = np.argsort([-k.response for k in kps])[:max_points]
    kps = [kps[i] for i in order]
    desc = desc[order] if desc is not None else None
    s = np.array([2.0 ** k.octave for k in kps])
    xy = _level_to_pixel(np.array([k.pt for k in kps]), s, image.shape[1], image.shape[0])
    return _to_features(xy, [k.response for k in kps], _binary_to_float(desc, len(kps), desc.shape[1] * 8 if desc is not None else 488))


def centroid_angles(image: np.ndarray, xy: np.ndarray, radius: int = 7) -> np.ndarray:
    """Intensity-centroid orientation (as in ORB) of each point, radians in image coordinates."""
    pad = np.pad(image.astype(np.float64), radius, mode="reflect")
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    disc = (dx**2 + dy**2) <= radius**2
    out = np.zeros(len(xy))
    for i, (x, y) in enumerate(np.rint(xy).astype(int)):
        patch = pad[y : y + 2 * radius + 1, x : x + 2 * radius + 1] * disc
        out[i] = np.arctan2((patch * dy).sum(), (patch * dx).sum())
    return out


def _sift_descriptors(image: np.ndarray, xy: np.ndarray, size: float = 12.0, sign: float = SIFT_ANGLE_SIGN) -> np.ndarray:
    """SIFT descriptors at given points, each in its intensity-centroid orientation."""
    if len(xy) == 0:
        return np.zeros((0, 128), np.float32)
    angles = np.degrees(sign * centroid_angles(image, xy)) % 360.0
    kps = [cv2.KeyPoint(float(x), float(y), size, float(a)) for (x, y), a in zip(xy, angles)]
    got, desc = cv2.SIFT_create().compute(image, kps)
    full = np.zeros((len(kps), 128), np.float32)
    where = {(k.pt[0], k.pt[1]): i for i, k in enumerate(kps)}
    for k, d in zip(got, desc if desc is not None else []):
        full[where.get((k.pt[0], k.pt[1]), 0)] = d
    return full


def _peaks_of(response: torch.Tensor, image: np.ndarray, max_points: int, border: int = 4) -> Features:
    peaks = find_peaks(response, top_k=max_points, threshold=0.0, window=5, border=border)
    valid = peaks.valid[0, 0]
    xy = peaks.xy[0, 0][valid].double().numpy()
    score = peaks.score[0, 0][valid].double().numpy()
    return _to_features(xy, score, _sift_descriptors(image, xy))


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]


HESSIAN_SIGMAS = (1.2, 1.7, 2.4, 3.4, 4.8, 6.8)


def harris_map(x: torch.Tensor) -> torch.Tensor:
    """kornia's Harris response (k = 0.04) of grey images ``(B, 1, H, W)`` in [0, 1]: ``(B, 1, H, W)``."""
    return KF.harris_response(x, k=0.04)


def hessian_map(x: torch.Tensor, sigmas: tuple[float, ...] = HESSIAN_SIGMAS) -> torch.Tensor:
    """Multi-scale determinant of Hessian of grey images ``(B, 1, H, W)`` in [0, 1] (kornia
    ``hessian_response`` on Gaussian-blurred copies, scale-normalised by sigma^4), maximum over scales."""
    best = None
    for s in sigmas:
        k = 2 * int(3 * s) + 1
        blurred = KFil.gaussian_blur2d(x, (k, k), (s, s), border_type="reflect")
        r = KF.hessian_response(blurred) * s**4
        best = r if best is None else torch.maximum(best, r)
    return best


def harris(image: np.ndarray, max_points: int = 2000) -> Features:
    """Peaks (``ops.peaks``, 5x5) of :func:`harris_map` on the pixel grid."""
    return _peaks_of(harris_map(_as_tensor(image)), image, max_points)


def hessian(image: np.ndarray, max_points: int = 2000, sigmas: tuple[float, ...] = HESSIAN_SIGMAS) -> Features:
    """Peaks (``ops.peaks``, 5x5) of :func:`hessian_map`."""
    return _peaks_of(hessian_map(_as_tensor(image), sigmas), image, max_points)


BASELINES: dict[str, Callable[[np.ndarray], Features]] = {
    "sift": sift, "orb": orb, "akaze": akaze, "harris": harris, "hessian": hessian,
}
# the response each detector's points are found again on when matches are relocated (``relocation.py``)
RESPONSE_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"harris": harris_map, "hessian": hessian_map}


def run_baseline(name: str, image: np.ndarray | torch.Tensor) -> Features:
    """Run baseline ``name`` on a grey image (``(H, W)`` or ``(1, H, W)`` uint8, or float in [0, 1])."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.is_floating_point():
            image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
        image = image.numpy()
    image = np.asarray(image)
    if image.ndim == 3:  # (C, H, W) -> grey
        image = image.astype(np.float64).mean(0).round() if image.shape[0] == 3 else image[0]
    return BASELINES[name](np.ascontiguousarray(image.astype(np.uint8)))
