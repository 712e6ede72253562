"""The built-in demo set: axial slices cut from the MNI152 template (shipped with nilearn, no download) of
randomly deformed subjects, AD ones with simulated atrophy.

Each subject gets a pose (rotation up to 10 degrees in plane, 3 out of it), a scale (+-7%), a shift and a
smooth elastic warp. AD subjects get an atrophy severity s in 0.25..1: the lateral ventricles enlarge (near
their centroid the template is sampled 19-40% closer to it, fading smoothly outwards) and grey matter within
1.0-2.2 mm of CSF (varying smoothly over the brain) becomes CSF: widened sulci, thinner cortex. NC subjects
get a healthy +-8% ventricle size and no atrophy. Every slice then gets a bias field, contrast, gamma and
noise. This is a stand-in with the known direction of the change (more CSF in AD), not a model of the
disease: no hippocampal or regional pattern, one template anatomy.

`cached_demo` builds one class and split at 256x256 and caches it; dataset.load_slices('demo', ...) is how
the rest of the project reads it.
"""
from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from tqdm import tqdm

import core
from core import CLASSES, SPLITS

DEMO_VERSION = 2  # bump when the demo generator changes, so stale caches are not reused
DEMO_RES = 256
DEMO_COUNT = {"train": 2000, "test": 500}  # per class
DEMO_SLICES_PER_SUBJECT = 10
DEMO_FOV_MM = 230.0  # field of view of a demo slice; the template has 1 mm voxels


def axial_band(foreground: np.ndarray, band: tuple[float, float]) -> tuple[float, float]:
    """(lo, hi) axial indices: the `band` fraction of the extent of slices with >= 10% of the largest foreground.

    One rule for NIfTI volumes (dataset.py) and the template the demo set is cut from, so --band means the same."""
    area = foreground.sum(axis=(0, 1))
    z = np.nonzero(area >= 0.1 * area.max())[0]
    return z[0] + band[0] * (z[-1] - z[0]), z[0] + band[1] * (z[-1] - z[0])


@dataclass
class _Template:
    volume: torch.Tensor  # (1, 4, Z, Y, X): T1, brain mask, grey matter, depth below CSF/outside in mm
    centre: tuple[float, float]  # x, y voxel of the brain's centre
    ventricles: tuple[float, float]  # x, y voxel of the lateral ventricles' centroid in the band
    z_band: tuple[float, float]  # axial voxel range of the band
    csf_level: float  # T1 intensity of CSF


@functools.lru_cache(maxsize=1)
def _template(band: tuple[float, float]) -> _Template:
    """MNI152 1 mm T1, brain mask and GM/WM maps shipped with nilearn (no download), prepared for sampling."""
    from nilearn import datasets  # slow import; only the demo set needs it
    loaders = (datasets.load_mni152_template, datasets.load_mni152_brain_mask,
               datasets.load_mni152_gm_template, datasets.load_mni152_wm_template)
    t1, mask, gm, wm = (nib.as_closest_canonical(f(resolution=1)).get_fdata(dtype=np.float32) for f in loaders)
    csf = np.clip(mask - gm - wm, 0, 1)
    depth = ndimage.distance_transform_edt((csf < 0.5) & (mask > 0.5)).astype(np.float32)
    z_lo, z_hi = axial_band(mask > 0.5, band)
    xs, ys, _ = np.nonzero(mask > 0.5)
    cx, cy = (xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0
    vx, vy, _ = np.nonzero(csf[:, :, math.ceil(z_lo):math.floor(z_hi) + 1] > 0.5)
    central = (np.abs(vx - cx) < 20) & (np.abs(vy - cy) < 40)  # the lateral ventricles, not the sulci
    volume = torch.from_numpy(np.stack([t1, mask, gm, depth])).permute(0, 3, 2, 1)[None].contiguous()
    return _Template(volume, (float(cx), float(cy)), (float(vx[central].mean()), float(vy[central].mean())),
                     (float(z_lo), float(z_hi)), float(np.median(t1[csf > 0.9])))


def _uniform(gen, lo, hi, *shape):
    return lo + (hi - lo) * torch.rand(*shape, generator=gen)


def _smooth_field(gen, n: int, channels: int, grid: int, size: int) -> torch.Tensor:
    """Smooth random field (n, channels, size, size): grid x grid normal noise upsampled bicubically."""
    return F.interpolate(torch.randn(n, channels, grid, grid, generator=gen), size=(size, size), mode="bicubic",
                         align_corners=True)


def _rotation(yaw, pitch, roll) -> torch.Tensor:
    """(S, 3, 3) rotations about z (in-plane), x and y (tilt of the slice plane), angles in radians."""
    c, s, o, i = torch.cos, torch.sin, torch.zeros_like(yaw), torch.ones_like(yaw)
    rz = torch.stack([c(yaw), -s(yaw), o, s(yaw), c(yaw), o, o, o, i], -1).view(-1, 3, 3)
    rx = torch.stack([i, o, o, o, c(pitch), -s(pitch), o, s(pitch), c(pitch)], -1).view(-1, 3, 3)
    ry = torch.stack([c(roll), o, s(roll), o, i, o, -s(roll), o, c(roll)], -1).view(-1, 3, 3)
    return rz @ rx @ ry


def _demo_subjects(tpl: _Template, gen: torch.Generator, n_subjects: int, class_name: str) -> torch.Tensor:
    """uint8 (n_subjects * DEMO_SLICES_PER_SUBJECT, 1, 256, 256): axial slices of randomly deformed subjects."""
    S, K, R = n_subjects, DEMO_SLICES_PER_SUBJECT, DEMO_RES
    # One anatomy per subject: pose, scale, elastic warp, and for AD an atrophy severity.
    angles = torch.deg2rad(_uniform(gen, -1, 1, S, 3) * torch.tensor([10.0, 3.0, 3.0]))
    rot = _rotation(*angles.unbind(1))
    scale = torch.exp(_uniform(gen, -0.07, 0.07, S))
    shift = _uniform(gen, -5, 5, S, 2)
    L = R // 4  # the warp is smooth: compute it on an L x L grid, then upsample
    elastic = _smooth_field(gen, S, 2, 6, L).permute(0, 2, 3, 1) * 2.5  # mm, (S, L, L, 2)
    if class_name == "AD":
        severity = _uniform(gen, 0.25, 1.0, S)
        expand, erode = 0.12 + 0.28 * severity, 0.6 + 1.6 * severity  # ventricle expansion, cortical erosion in mm
    else:  # healthy variation of ventricle size, no atrophy
        expand, erode = _uniform(gen, -0.08, 0.08, S), torch.zeros(S)
    erode_map = erode.view(S, 1, 1) * (1 + 0.4 * _smooth_field(gen, S, 1, 4, R)[:, 0]).clamp(min=0)
    # K slices per subject, evenly through the band with jitter.
    z = tpl.z_band[0] + (torch.arange(K) + torch.rand(S, K, generator=gen)) / K * (tpl.z_band[1] - tpl.z_band[0])

    each = functools.partial(torch.repeat_interleave, repeats=K, dim=0)
    step = DEMO_FOV_MM / L
    u = (torch.arange(L) + 0.5 - L / 2) * step  # mm; columns run to the subject's right
    v = (L / 2 - torch.arange(L) - 0.5) * step  # rows run from anterior to posterior
    plane = torch.stack(torch.meshgrid(v, u, indexing="ij")[::-1], -1)  # (L, L, 2) as (u, v)
    p = (plane + elastic) * scale.view(S, 1, 1, 1)
    p = torch.cat([p, torch.zeros(S, L, L, 1)], -1)
    q = each(torch.einsum("sij,shwj->shwi", rot, p))  # (B, L, L, 3) offsets from the slice centre, mm
    q[..., :2] += each(torch.tensor(tpl.centre) + shift).view(-1, 1, 1, 2)
    q[..., 2] += z.reshape(-1, 1, 1)
    # Atrophy 1: enlarged ventricles, a smooth radial pull towards their centroid (no folding while |expand| < 1),
    # fading over ~18 mm across and ~32 mm front to back, the lateral ventricles' shape.
    d = q[..., :2] - torch.tensor(tpl.ventricles)
    g = torch.exp(-0.5 * ((d[..., 0] / 18.0) ** 2 + (d[..., 1] / 32.0) ** 2))
    q[..., :2] -= each(expand).view(-1, 1, 1, 1) * d * g[..., None]

    size = torch.tensor(tpl.volume.shape[2:][::-1], dtype=torch.float32)  # X, Y, Z
    q = F.interpolate(q.permute(0, 3, 1, 2), size=(R, R), mode="bilinear").permute(0, 2, 3, 1)
    grid = (q / (size - 1) * 2 - 1)[None]  # (1, B, R, R, 3): every slice is one depth plane of a single sample
    t1, mask, gm, depth = F.grid_sample(tpl.volume, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    # Atrophy 2: widened sulci and thinner cortex, grey matter within `erode` mm of CSF becomes CSF.
    lost = gm * (each(erode_map) - depth).clamp(0, 1)
    t1 = t1 * (1 - lost) + tpl.csf_level * lost
    # Scanner variation per slice: bias field, contrast, gamma, noise.
    B = S * K
    t1 = t1 * torch.exp(0.12 * _smooth_field(gen, B, 1, 4, R)[:, 0]) * torch.exp(_uniform(gen, -0.08, 0.08, B, 1, 1))
    t1 = t1.clamp(0, 1) ** torch.exp(_uniform(gen, -0.2, 0.2, B, 1, 1))
    t1 = t1 + _uniform(gen, 0.005, 0.03, B, 1, 1) * torch.randn(B, R, R, generator=gen) * mask
    return (t1.clamp(0, 1) * 255).round().to(torch.uint8)[:, None]


def build_demo(class_name: str, split: str, count: int, seed: int, band: tuple[float, float]) -> torch.Tensor:
    """uint8 (count, 1, 256, 256) demo slices, bit-identical for the same arguments, torch build and thread count.

    (Another thread count changes about 1 pixel in 40,000 by one grey level: float rounding in vectorised ops.)
    """
    tpl = _template(tuple(band))
    gen = torch.Generator().manual_seed(4 * seed + 2 * SPLITS.index(split) + CLASSES.index(class_name))
    n_subjects = math.ceil(count / DEMO_SLICES_PER_SUBJECT)
    progress = tqdm(range(0, n_subjects, 6), desc=f"building demo {class_name}/{split}", disable=None, leave=False)
    chunks = [_demo_subjects(tpl, gen, min(6, n_subjects - i), class_name) for i in progress]
    return torch.cat(chunks)[:count]


def _read_cache(path: Path, count: int) -> torch.Tensor | None:
    """The cached demo slices, or None if the cache is absent or unusable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        images = torch.load(path, weights_only=True)
    except Exception as e:  # truncated or foreign file: any failure means rebuild
        print(f"warning: ignoring unreadable demo cache {path} ({type(e).__name__}); rebuilding it", file=sys.stderr)
        return None
    usable = isinstance(images, torch.Tensor) and images.dtype == torch.uint8
    return images if usable and images.shape == (count, 1, DEMO_RES, DEMO_RES) else None


def subject_ids(class_name: str, split: str, count: int) -> list[str]:
    """The subject id of each of `count` demo slices (DEMO_SLICES_PER_SUBJECT consecutive slices per subject)."""
    return [f"demo-{split}-{class_name}-{i // DEMO_SLICES_PER_SUBJECT:04d}" for i in range(count)]


def cached_demo(class_name: str, split: str, count: int, seed: int, band: tuple[float, float],
                cache_dir: str | None = None) -> torch.Tensor:
    """`build_demo`'s slices, read from the cache folder (core.cache_folder) when built before, else built and
    cached there; a cache that cannot be written is only a warning."""
    path = core.cache_folder(cache_dir) / (f"demo-v{DEMO_VERSION}-{class_name}-{split}-n{count}-s{seed}"
                                         f"-b{band[0]:.3f}-{band[1]:.3f}.pt")
    images = _read_cache(path, count)
    if images is None:
        images = build_demo(class_name, split, count, seed, band)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with core.open_atomic(path) as f:
                torch.save(images, f)
        except OSError as e:
            print(f"warning: cannot cache the demo set in {path.parent} ({e}); it will be rebuilt next time",
                  file=sys.stderr)
    return images
