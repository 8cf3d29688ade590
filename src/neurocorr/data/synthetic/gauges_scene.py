"""The scene around a synthetic dial, batched: backgrounds (real photos shipped with scikit-image,
clutter, plain), a perspective tilt of the dial plane, placement (off-centre), a cast shadow, and the
camera: defocus and motion blur, colour cast, exposure, noise and JPEG artefacts."""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import get_perspective_transform
from PIL import Image

from neurocorr.data.synthetic.gauges_dial import choose, cover, over, uniform
from neurocorr.data.synthetic.gauges_style import BACKGROUNDS, GaugeStyle
from neurocorr.errors import ConfigError

PHOTO_SIDE = 256  # photos are kept as square RGB crops of this side


@lru_cache(maxsize=32)
def photo(name: str) -> torch.Tensor:
    """A scikit-image bundled picture (no download) as ``(3, 256, 256)`` float in [0, 1] (centre crop)."""
    import skimage.data

    loader = getattr(skimage.data, name, None)
    try:
        value = loader() if loader is not None else None
        image = np.asarray(value[0] if isinstance(value, tuple) else value) if value is not None else None
    except Exception as err:  # noqa: BLE001 - some need optional downloads
        raise ConfigError(f"gauge style photos: {name!r} cannot be loaded offline: {err}") from err
    if image is None:
        raise ConfigError(f"gauge style photos: {name!r} is not a scikit-image picture (skimage.data)")
    image = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else max(float(image.max()), 1e-6))
    tensor = torch.from_numpy(image)
    tensor = tensor.unsqueeze(0).expand(3, -1, -1) if tensor.dim() == 2 else tensor[..., :3].permute(2, 0, 1)
    side = min(tensor.shape[-2:])
    top, left = (tensor.shape[1] - side) // 2, (tensor.shape[2] - side) // 2
    square = tensor[:, top : top + side, left : left + side].unsqueeze(0)
    return F.interpolate(square, size=(PHOTO_SIDE, PHOTO_SIDE), mode="bilinear", antialias=True, align_corners=False)[0]


def backgrounds(g: torch.Generator, b: int, r: int, style: GaugeStyle) -> torch.Tensor:
    """``(B, 3, r, r)``: a random crop (zoom, shift, flip, tint) of a photo, coloured clutter, or a plain wall."""
    kind = choose(g, b, style.backgrounds, BACKGROUNDS)
    names = style.photos if "photo" in style.backgrounds else style.photos[:1]  # loaded only when used
    bank = torch.stack([photo(n) for n in names])
    which = torch.randint(len(style.photos), (b,), generator=g) % len(names)
    zoom = uniform(g, b, 0.35, 1.0)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    shift = (torch.rand(b, 2, generator=g) * 2 - 1) * (1 - zoom).unsqueeze(1)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = zoom * flip, zoom, shift
    grid = F.affine_grid(theta, [b, 3, r, r], align_corners=False)
    photos = F.grid_sample(bank[which], grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    photos = photos * (0.8 + 0.4 * torch.rand(b, 3, 1, 1, generator=g))
    clutter = F.interpolate(torch.rand(b, 3, 6, 6, generator=g), size=(r, r), mode="bicubic", align_corners=False)
    clutter = 0.15 + 0.7 * clutter.clamp(0, 1)
    ys, xs = torch.meshgrid(torch.arange(r, dtype=torch.float32), torch.arange(r, dtype=torch.float32), indexing="ij")
    for _ in range(6):
        cx, cy = (uniform(g, b, 0, r).view(b, 1, 1) for _ in range(2))
        angle = uniform(g, b, 0, math.pi).view(b, 1, 1)
        hw, hh = uniform(g, b, 0.02 * r, 0.3 * r).view(b, 1, 1), uniform(g, b, 0.01 * r, 0.1 * r).view(b, 1, 1)
        u = (xs - cx) * torch.cos(angle) + (ys - cy) * torch.sin(angle)
        v = -(xs - cx) * torch.sin(angle) + (ys - cy) * torch.cos(angle)
        clutter = over(clutter, cover(torch.maximum(u.abs() - hw, v.abs() - hh)) * uniform(g, b, 0.5, 1).view(b, 1, 1),
                       torch.rand(b, 3, generator=g))
    wall = torch.rand(b, 3, generator=g).view(b, 3, 1, 1) * 0.8 + 0.1
    wall = wall * (1 - 0.3 * torch.rand(b, 1, 1, 1, generator=g) * (xs / r).view(1, 1, r, r))
    kind = kind.view(b, 1, 1, 1)
    return torch.where(kind == 0, photos, torch.where(kind == 1, clutter, wall)).clamp(0, 1)


def tilt_homography(g: torch.Generator, b: int, canvas: int, bezel: float, out: int, style: GaugeStyle) -> torch.Tensor:
    """``(B, 3, 3)`` canvas px -> scene px: an in-plane turn, a tilt of the dial plane about a random axis
    by an angle in ``style.tilt`` seen by a pinhole camera, and a scale that makes the bezel's radius
    ``style.dial_radius`` x ``out``; the dial centre lands on the scene centre."""
    c = canvas / 2
    src = torch.tensor([[c - bezel, c - bezel], [c + bezel, c - bezel], [c + bezel, c + bezel], [c - bezel, c + bezel]])
    p = (src - c).unsqueeze(0).expand(b, 4, 2)
    turn = torch.deg2rad(uniform(g, b, -20, 20)).view(b, 1)
    x = p[..., 0] * torch.cos(turn) - p[..., 1] * torch.sin(turn)
    y = p[..., 0] * torch.sin(turn) + p[..., 1] * torch.cos(turn)
    tilt = torch.deg2rad(uniform(g, b, *style.tilt)).view(b, 1)
    axis = uniform(g, b, 0, math.pi).view(b, 1)
    ax, ay = torch.cos(axis), torch.sin(axis)
    # Rodrigues: rotate (x, y, 0) about the in-plane axis (ax, ay, 0)
    along = x * ax + y * ay
    cos_t, sin_t = torch.cos(tilt), torch.sin(tilt)
    xr = x * cos_t + ax * along * (1 - cos_t)
    yr = y * cos_t + ay * along * (1 - cos_t)
    zr = (ay * x - ax * y) * sin_t
    distance = bezel * uniform(g, b, 2.5, 6.0).view(b, 1)  # camera distance: wide angle to tele
    proj = torch.stack([xr, yr], -1) * (distance / (distance + zr)).unsqueeze(-1)
    size = uniform(g, b, *style.dial_radius).view(b, 1, 1) * out / bezel
    dst = proj * size + out / 2
    return get_perspective_transform(src.unsqueeze(0).expand(b, 4, 2).contiguous(), dst)


def apply_homography(h: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``points`` ``(B, N, 2)`` through ``h`` ``(B, 3, 3)``."""
    homog = torch.cat([points, torch.ones_like(points[..., :1])], -1) @ h.transpose(1, 2)
    return homog[..., :2] / homog[..., 2:]


def place(g: torch.Generator, h: torch.Tensor, points: torch.Tensor, labels: torch.Tensor, out: int, crop: float,
          margin: float) -> torch.Tensor:
    """Shift the scene by up to ``crop`` x ``out`` (off-centre dials), no further than keeps every labelled
    point ``margin`` px inside the image; returns the shifted homography."""
    b = h.shape[0]
    moved = apply_homography(h, points)
    valid = (labels >= 0).unsqueeze(-1)
    lo = margin - torch.where(valid, moved, torch.full_like(moved, float("inf"))).amin(1)
    hi = out - 1 - margin - torch.where(valid, moved, torch.full_like(moved, -float("inf"))).amax(1)
    want = (torch.rand(b, 2, generator=g) * 2 - 1) * crop * out
    shift = torch.where(lo <= hi, torch.maximum(lo, torch.minimum(hi, want)), (lo + hi) / 2)
    t = torch.eye(3).repeat(b, 1, 1)
    t[:, :2, 2] = shift
    return t @ h


def cast_shadow(g: torch.Generator, alpha: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """A soft shadow of coverage ``alpha`` ``(B, 1, H, W)`` offset in a random direction: the factor that darkens the background."""
    b, _, hgt, wid = alpha.shape
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(b, 2, generator=g) * 2 - 1) * 0.08
    grid = F.affine_grid(theta, [b, 1, hgt, wid], align_corners=False)
    shadow = F.grid_sample(alpha, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sigma = max(1.0, wid / 40)
    k = 2 * int(math.ceil(2 * sigma)) + 1
    return 1 - strength.view(b, 1, 1, 1) * gaussian_blur2d(shadow, (k, k), (sigma, sigma))


def motion_kernels(g: torch.Generator, b: int, length: torch.Tensor, k: int = 7) -> torch.Tensor:
    """``(B, 1, k, k)`` line kernels of ``length`` px (``(B,)``) at random angles (a delta when length is 0)."""
    angle = uniform(g, b, 0, math.pi).view(b, 1, 1)
    o = torch.arange(k, dtype=torch.float32) - k // 2
    ys, xs = torch.meshgrid(o, o, indexing="ij")
    half = (length / 2).view(b, 1, 1)
    t = (xs * torch.cos(angle) + ys * torch.sin(angle)).clamp(-half, half)
    dist = torch.sqrt((xs - t * torch.cos(angle)) ** 2 + (ys - t * torch.sin(angle)) ** 2)
    kernel = (1 - dist).clamp(min=0)
    return (kernel / kernel.sum((1, 2), keepdim=True)).unsqueeze(1)


def camera(g: torch.Generator, img: torch.Tensor, style: GaugeStyle) -> torch.Tensor:
    """Defocus, motion blur, colour cast, exposure, noise on ``(B, 3, S, S)`` in [0, 1] -> uint8, then JPEG."""
    b, _, s, _ = img.shape
    sigma = uniform(g, b, *style.defocus).clamp(min=0.05) * s / 224
    k = 2 * int(math.ceil(2.5 * float(sigma.max()))) + 1
    img = gaussian_blur2d(img, (k, k), sigma.view(b, 1).expand(b, 2).contiguous())
    kernels = motion_kernels(g, b, uniform(g, b, *style.motion)).repeat_interleave(3, 0)
    img = F.conv2d(F.pad(img.reshape(1, b * 3, s, s), (3, 3, 3, 3), mode="replicate"), kernels, groups=b * 3).view(b, 3, s, s)
    gain = 1 + (torch.rand(b, 3, 1, 1, generator=g) * 2 - 1) * style.cast
    img = img * gain * uniform(g, b, 0.65, 1.2).view(b, 1, 1, 1) + uniform(g, b, -0.08, 0.08).view(b, 1, 1, 1)
    img = img.clamp(0, 1) ** uniform(g, b, 0.75, 1.35).view(b, 1, 1, 1)
    img = img + torch.randn(img.shape, generator=g) * uniform(g, b, *style.noise).view(b, 1, 1, 1)
    out = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    quality = torch.randint(style.jpeg[0], style.jpeg[1] + 1, (b,), generator=g).tolist()
    use = (torch.rand(b, generator=g) < 0.7).tolist()
    for i in range(b):
        if use[i] and quality[i] < 100:
            out[i] = jpeg(out[i], quality[i])
    return out


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """``(3, H, W)`` uint8 through a JPEG encode and decode at ``quality`` (deterministic)."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return torch.from_numpy(np.asarray(decoded.convert("RGB")).copy()).permute(2, 0, 1)
