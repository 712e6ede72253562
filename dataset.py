"""Every way brain images enter the project: ADNI slice folders, NIfTI volumes, and the built-in demo set
(simulated in demo.py); the pre-processing they share, and the atrophy biomarkers measured on slices.

All sources end as a `SliceSet`: the decoded slices of one class and split, held in memory once as
uint8 (N, 1, R, R) at the final resolution R. Lower resolutions are area-downsampled from it
(`SliceSet.at_resolution`), and `prepare_batch` does the design's random flip and [-1, 1]
normalisation as tensor ops on the training device, so a resolution change never touches the disk.

Non-square slices (ADNI JPEGs are 256 wide x 240 high) are zero-padded to a square, then resized
with antialiasing: anatomy is never stretched.

Examples:
    python dataset.py                                    # summary of the demo set (class AD, train)
    python dataset.py --data /data/ADNI --class NC --split test --resolution 128
    python dataset.py --data /data/nifti --class AD --band 0.4 0.6 --skip-bad
    python dataset.py --export /tmp/demo_adni --count 200   # demo set as ADNI-layout JPEGs
    python dataset.py --report                           # CSF / ventricle fractions, AD vs NC
    python dataset.py --bench --resolution 64            # data pipeline images/s per resolution
    python dataset.py --class NC --preview nc.png        # a 9x9 grid of slices spread over the set
"""

import argparse
import functools
import json
import math
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from torchvision import transforms
from tqdm import tqdm

import core
import demo
from core import CLASSES, SPLITS, cache_folder  # noqa: F401 (re-exported)
from demo import (DEMO_COUNT, DEMO_FOV_MM, DEMO_RES, DEMO_SLICES_PER_SUBJECT,  # noqa: F401 (re-exported)
                  DEMO_VERSION, build_demo)

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DEFAULT_BAND = (0.45, 0.65)  # central fraction of the brain's axial extent (from ventricles' floor to their bodies)
EXPORT_HEIGHT = 240  # ADNI slices are 256 wide x 240 high


class DataError(core.UserError):
    """Bad data input; str(e) is ONE line naming the path/flag and what to do."""


@dataclass(eq=False)
class SliceSet:
    """Decoded slices of one class and split, uint8 (N, 1, R, R) on the CPU."""

    images: torch.Tensor
    subjects: list[str]  # subject id per image
    class_name: str
    split: str
    source: str  # one human-readable line
    skipped: int = 0  # unreadable files skipped with skip_bad=True
    _by_res: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        n, c, h, w = self.images.shape
        assert self.images.dtype == torch.uint8 and c == 1 and h == w, (self.images.dtype, self.images.shape)
        assert len(self.subjects) == n, (len(self.subjects), n)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def at_resolution(self, res: int) -> torch.Tensor:
        """uint8 (N, 1, res, res), area-downsampled from `images` and cached; res divides R by a power of two."""
        factor = self.resolution // res if res > 0 else 0
        if factor < 1 or factor * res != self.resolution or factor & (factor - 1):
            raise ValueError(f"resolution {res} is not a power-of-two divisor of {self.resolution}")
        if factor == 1:
            return self.images
        if res not in self._by_res:
            out = torch.empty(len(self), 1, res, res, dtype=torch.uint8)
            for i in range(0, len(self), 1024):  # chunks keep the float copy small
                out[i:i + 1024] = F.avg_pool2d(self.images[i:i + 1024].float(), factor).round_().to(torch.uint8)
            self._by_res[res] = out
        return self._by_res[res]


# ---------------------------------------------------------------- per-image pre-processing

class SquareGray:
    """PIL image -> 8-bit grayscale ('L'), zero-padded to a centred square, so anatomy is never stretched."""

    def __call__(self, img: Image.Image) -> Image.Image:
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float scans: scale to 0..255, not clip
            a = np.asarray(img, dtype=np.float32)
            img = Image.fromarray(np.round(a * (255.0 / max(float(a.max()), 1e-8))).clip(0, 255).astype(np.uint8))
        img = img.convert("L")
        w, h = img.size
        if w == h:
            return img
        side = max(w, h)
        square = Image.new("L", (side, side), 0)
        square.paste(img, ((side - w) // 2, (side - h) // 2))
        return square

    def __repr__(self) -> str:
        return "SquareGray()"


def _square_uint8(img: Image.Image, res: int) -> np.ndarray:
    """Any PIL image -> uint8 (res, res): grayscale, pad to square, antialiased bilinear resize (as torchvision)."""
    img = SquareGray()(img)
    if img.size != (res, res):
        img = img.resize((res, res), Image.BILINEAR)
    return np.asarray(img)


def design_transform(resolution: int) -> transforms.Compose:
    """The design's pipeline for one PIL image -> float (1, R, R) in [-1, 1]; `prepare_batch` is its batched twin."""
    return transforms.Compose([
        SquareGray(),
        transforms.Resize((resolution, resolution), antialias=True),
        transforms.ToTensor(),
        transforms.RandomHorizontalFlip(0.5),
        transforms.Normalize((0.5,), (0.5,)),
    ])


def prepare_batch(x: torch.Tensor, generator: torch.Generator | None = None, flip: bool = True) -> torch.Tensor:
    """uint8 (B, 1, r, r) on any device -> float32 in [-1, 1] on that device, each image flipped left-right with p=0.5.

    Flip decisions are drawn on the CPU from `generator`, so a seed gives the same batch on any device.
    """
    assert x.dtype == torch.uint8 and x.ndim == 4, (x.dtype, x.shape)
    if flip:
        flips = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
        x = torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)
    return x.float().div_(127.5).sub_(1.0)  # (v / 255 - 0.5) / 0.5


# ---------------------------------------------------------------- folders: ADNI slices and NIfTI volumes

def _natural_key(path: Path):
    """Sort key with numbers compared as numbers, so S2_9 comes before S2_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _class_dir(root: Path, class_name: str, split: str) -> tuple[Path, bool]:
    """The folder holding one class: ROOT/<split>/<CLASS> if present, else ROOT/<CLASS>; also says if split applied."""
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; pass --data with an existing folder, or --data demo")
    if not root.is_dir():
        raise DataError(f"--data {root} is a file, not a folder; "
                        f"pass the folder that holds {split}/{class_name}/ or {class_name}/")
    for folder, by_split in ((root / split / class_name, True), (root / class_name, False)):
        if folder.is_dir():
            return folder, by_split
    raise DataError(f"found neither {root / split / class_name} nor {root / class_name}; "
                    f"arrange the data as ROOT/{{train,test}}/{{AD,NC}}/ or ROOT/{{AD,NC}}/ and pass --data ROOT")


def _read_image(path: Path, res: int) -> np.ndarray:
    """uint8 (1, res, res) from one image file."""
    with Image.open(path) as img:
        img.load()
        return _square_uint8(img, res)[None]


def _read_volume(path: Path, res: int, band: tuple[float, float]) -> np.ndarray:
    """uint8 (k, res, res) axial slices of a 3D volume's central band: RAS, 0.5/99.5 percentile clip, anterior up."""
    img = nib.load(path)
    if img.ndim == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if img.ndim != 3:
        raise DataError(f"{path} has shape {img.shape}, not a 3D volume; "
                        f"keep one 3D T1 volume per file, or pass --skip-bad")
    img = nib.as_closest_canonical(img)
    vol = img.get_fdata(dtype=np.float32)
    lo = np.percentile(vol, 0.5)  # the background level, or below it negative outliers
    inside = vol[vol > lo]
    if inside.size == 0:
        raise DataError(f"{path} is blank (one value everywhere); remove it, or pass --skip-bad")
    hi = np.percentile(inside, 99.5)  # bright outliers (vessels, fat) must not darken the brain
    vol = np.clip((vol - lo) / max(hi - lo, 1e-8), 0, 1)
    z_lo, z_hi = demo.axial_band(vol > 0.1, band)
    zx, zy = (float(z) for z in img.header.get_zooms()[:2])
    slices = []
    for z in range(math.ceil(z_lo), math.floor(z_hi) + 1):
        pil = Image.fromarray(np.round(np.rot90(vol[:, :, z]) * 255).astype(np.uint8))  # rows: anterior first
        if zx != zy:  # non-square voxels: resample to physical proportions before padding
            finest = min(zx, zy)
            pil = pil.resize((round(pil.width * zx / finest), round(pil.height * zy / finest)), Image.BILINEAR)
        slices.append(_square_uint8(pil, res))
    return np.stack(slices) if slices else np.zeros((0, res, res), np.uint8)


def _load_folder(root: Path, class_name: str, split: str, res: int, band, skip_bad: bool) -> SliceSet:
    folder, by_split = _class_dir(root, class_name, split)
    suffixes = IMAGE_SUFFIXES + NIFTI_SUFFIXES
    files = sorted((p for p in folder.rglob("*")  # hidden files (macOS "._x.jpeg" and the like) are not slices
                    if p.is_file() and p.name.lower().endswith(suffixes) and not p.name.startswith(".")),
                   key=lambda p: _natural_key(p.relative_to(folder)))
    volumes = [p for p in files if _is_nifti(p)]
    if not files:
        raise DataError(f"class folder {folder} holds no {'/'.join(suffixes)} files; "
                        f"put the {class_name} slices or volumes there")
    if volumes and len(volumes) != len(files):
        raise DataError(f"class folder {folder} mixes images and NIfTI volumes; keep one kind per folder")
    read = functools.partial(_read_volume, res=res, band=band) if volumes else functools.partial(_read_image, res=res)

    def attempt(path):
        try:
            return read(path), None
        except DataError as e:
            return None, e
        except Exception as e:  # any decoder failure means the file is unreadable
            detail = core.first_line(e, limit=None, default="no detail")
            return None, DataError(f"cannot read {path} ({type(e).__name__}: {detail}); "
                                   f"fix or remove the file, or pass --skip-bad to skip unreadable files")

    chunks, subjects, skipped = [], [], 0
    pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))  # PIL and zlib release the GIL while decoding
    try:
        for path, (slices, error) in tqdm(zip(files, pool.map(attempt, files)), total=len(files),
                                          desc=f"decoding {folder}", disable=None, leave=False):
            if error is not None and not skip_bad:
                raise error
            skipped += error is not None
            stem = path.name[:-len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem
            if slices is not None and len(slices):
                chunks.append(slices)
                subjects += [stem if volumes else stem.rsplit("_", 1)[0]] * len(slices)
    finally:
        pool.shutdown(cancel_futures=True)  # on an error, do not decode the rest first
    if not chunks:
        raise DataError(f"no readable slices in {folder} ({skipped} unreadable files skipped); check the files there")
    images = np.empty((len(subjects), 1, res, res), np.uint8)
    start = 0
    for i, chunk in enumerate(chunks):  # copy and release chunk by chunk: peak memory stays ~1x the data
        images[start:start + len(chunk), 0] = chunk
        start += len(chunk)
        chunks[i] = None
    images = torch.from_numpy(images)
    details = [f"{len(volumes) - skipped} volumes, band {band[0]:.2f}-{band[1]:.2f}"] if volumes else []
    details.append(f"{len(images)} slices")
    details += [f"{skipped} unreadable files skipped"] if skipped else []
    details += [] if by_split else [f"no {split}/ folder, so --split is ignored"]
    kind = "NIfTI" if volumes else "ADNI"
    return SliceSet(images, subjects, class_name, split, f"{kind} folder {folder} ({', '.join(details)})", skipped)


def _load_demo(class_name, split, res, count, seed, cache_dir, band) -> SliceSet:
    if res > DEMO_RES:
        raise DataError(f"--resolution {res} is above the demo set's {DEMO_RES}; pass --resolution {DEMO_RES} or lower")
    if count < 1:
        raise DataError(f"--count {count}: the demo set needs at least 1 slice; pass a positive --count")
    images = demo.cached_demo(class_name, split, count, seed, band, cache_dir)
    subjects = demo.subject_ids(class_name, split, count)
    full = SliceSet(images, subjects, class_name, split, "")
    return SliceSet(full.at_resolution(res), subjects, class_name, split,
                    f"demo set from the MNI152 template ({count} slices, seed {seed})")


def load_slices(data: str | None, class_name: str, split: str = "train", resolution: int = 256, *,
                skip_bad: bool = False, demo_count: int | None = None, seed: int = 0,
                cache_dir: str | None = None, band: tuple[float, float] = DEFAULT_BAND) -> SliceSet:
    """All slices of one class and split at `resolution`, from the demo set (data None or 'demo') or a folder.

    A folder holds ADNI slices (.jpeg/.jpg/.png) or NIfTI volumes (.nii/.nii.gz) in ROOT/<split>/<CLASS>/, or in
    ROOT/<CLASS>/ (split then ignored). The demo set is built at 256 and cached in `cache_dir`, else
    $BRAIN_STYLEGAN_CACHE, else ~/.cache/brain-stylegan.
    """
    if class_name == "all":  # both classes pooled (a parent run); subjects keep their class prefix
        parts = [load_slices(data, c, split, resolution, skip_bad=skip_bad, demo_count=demo_count, seed=seed,
                             cache_dir=cache_dir, band=band) for c in CLASSES]
        return SliceSet(torch.cat([p.images for p in parts]), [f"{p.class_name}/{s}" for p in parts for s in p.subjects],
                        "all", split, " + ".join(p.source for p in parts), sum(p.skipped for p in parts))
    if class_name not in CLASSES:
        raise DataError(f"--class {class_name!r} is not a known class; pass --class AD or --class NC")
    if split not in SPLITS:
        raise DataError(f"--split {split!r} is not a known split; pass --split train or --split test")
    if not (4 <= resolution <= 1024 and resolution & (resolution - 1) == 0):
        raise DataError(f"--resolution {resolution} is not a power of two in 4..1024; pass e.g. --resolution 256")
    if not 0 <= band[0] < band[1] <= 1:
        raise DataError(f"--band {band[0]} {band[1]} is not a range inside 0..1; pass e.g. --band 0.45 0.65")
    band = (float(band[0]), float(band[1]))
    if data is None or data == "demo":
        return _load_demo(class_name, split, resolution, demo_count or DEMO_COUNT[split], seed, cache_dir, band)
    return _load_folder(Path(data), class_name, split, resolution, band, skip_bad)


# ---------------------------------------------------------------- measuring atrophy

_EIGHT = np.ones((3, 3), bool)  # 8-connected neighbourhood
CSF_DARK = 0.45  # the biomarkers' cut: CSF is darker than this x the brain's 98th percentile


def _brain_and_csf(img: np.ndarray, darks) -> tuple[np.ndarray, list[np.ndarray]]:
    """One slice's brain mask and its CSF mask at each cut of `darks`.

    Brain: pixels brighter than 8% of the slice's 99.5th percentile, in 8-connected regions of at least 5% of the
    largest one (isolated specks, as a generator may draw in the background, are not brain), holes filled.
    CSF: brain pixels darker than `dark` x the brain's 98th percentile, except the brain's outermost ring of
    pixels (those 4-adjacent to the outside). That ring mixes tissue with the black background, so it reads as
    dark at every resolution; counted, it would add about perimeter / area of the brain, 0.02 at 256x256 but
    0.05 at 64x64 and 0.09 at 32x32 on the demo set, more than the CSF itself at low resolution.
    """
    fg = img > 0.08 * max(np.percentile(img, 99.5), 1)
    labels, n = ndimage.label(fg, structure=_EIGHT)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        fg = (sizes >= 0.05 * sizes.max())[labels]
    brain = ndimage.binary_fill_holes(fg)
    if not brain.any():
        return brain, [brain] * len(darks)
    inner, bright = ndimage.binary_erosion(brain), np.percentile(img[brain], 98)
    return brain, [inner & (img < dark * bright) for dark in darks]


def _ventricle_box(brain: np.ndarray) -> tuple[slice, slice]:
    """The central box of a (non-empty) brain mask: the middle 30% of its width, 50% of its height."""
    rows, cols = np.nonzero(brain)
    (r0, r1), (c0, c1) = (rows.min(), rows.max()), (cols.min(), cols.max())
    return (slice(int(r0 + 0.25 * (r1 - r0)), int(r0 + 0.75 * (r1 - r0)) + 1),
            slice(int(c0 + 0.35 * (c1 - c0)), int(c0 + 0.65 * (c1 - c0)) + 1))


def _fractions(images_uint8: torch.Tensor, darks) -> dict[str, torch.Tensor]:
    """Both biomarkers of each slice at each cut of `darks`: name -> float32 (N, len(darks)). The brain mask,
    its inner part and the ventricle box are found once per slice, whatever the number of cuts."""
    slices = _slices(images_uint8)
    out = {name: np.zeros((len(slices), len(darks))) for name in ("csf_fraction", "ventricle_fraction")}
    for i, img in enumerate(slices):
        brain, csfs = _brain_and_csf(img, darks)
        if not brain.any():
            continue  # no brain: 0
        box = _ventricle_box(brain)
        for j, csf in enumerate(csfs):
            out["csf_fraction"][i, j] = csf.sum() / max(brain.sum(), 1)
            out["ventricle_fraction"][i, j] = csf[box].sum() / max(brain[box].sum(), 1)
    return {name: torch.from_numpy(v).float() for name, v in out.items()}


def _slices(images_uint8: torch.Tensor) -> np.ndarray:
    """uint8 (N, 1, R, R) or (N, R, R) -> numpy (N, R, R), on the CPU."""
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim not in (3, 4) or \
            (images_uint8.ndim == 4 and images_uint8.shape[1] != 1):
        raise ValueError(f"expected uint8 slices (N, 1, R, R), got {images_uint8.dtype} {tuple(images_uint8.shape)}")
    return images_uint8.reshape(len(images_uint8), *images_uint8.shape[-2:]).cpu().numpy()


def csf_fraction(images_uint8: torch.Tensor, dark: float = CSF_DARK) -> torch.Tensor:
    """(N,) fraction of each slice's brain area that is CSF: dark pixels inside the filled brain mask, not on
    its outline (see `_brain_and_csf`); 0 for a slice without a brain.

    Meant for skull-stripped T1 slices (the demo set): ventricles and sulci widen with atrophy, so AD > NC.
    Values depend on the resolution (sulci narrower than a pixel merge into tissue): compare slices of one size.
    """
    return _fractions(images_uint8, (dark,))["csf_fraction"][:, 0]


def ventricle_fraction(images_uint8: torch.Tensor, dark: float = CSF_DARK) -> torch.Tensor:
    """(N,) `csf_fraction` within the central box of the brain (middle 30% of its width, 50% of its height):
    where the lateral ventricles of an axial slice lie; 0 for a slice without a brain."""
    return _fractions(images_uint8, (dark,))["ventricle_fraction"][:, 0]


BIOMARKERS = {"csf_fraction": csf_fraction, "ventricle_fraction": ventricle_fraction}

# The `dark` cuts of dark_profile: the biomarkers' own (CSF_DARK) between a stricter and a looser one.
DARK_LEVELS = (0.3, 0.45, 0.6)


def dark_profile(images_uint8: torch.Tensor, levels=DARK_LEVELS) -> dict[str, list[float]]:
    """Biomarker name -> its mean over the images at each `dark` cut of `levels`.

    Tells a smaller dark area from a lighter one: a generator that draws the ventricles at their real size
    but lighter grey falls short at the strict cuts and matches at the loose one; one that draws them smaller
    falls short at every cut."""
    return {name: v.double().mean(0).tolist() for name, v in _fractions(images_uint8, tuple(levels)).items()}


def biomarker_values(**image_sets: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
    """biomarker name -> image set name -> its per-image values (float64), for uint8 image sets."""
    fractions = {k: _fractions(x, (CSF_DARK,)) for k, x in image_sets.items()}  # both biomarkers in one pass
    return {name: {k: fractions[k][name][:, 0].double().numpy() for k in image_sets} for name in BIOMARKERS}


# ---------------------------------------------------------------- command line

def export_demo(out_dir: str, count: int | None, seed: int, force: bool, cache_dir: str | None = None,
                band: tuple[float, float] = DEFAULT_BAND) -> int:
    """Write the demo set as 256x240 JPEGs OUT/{train,test}/{AD,NC}/<subject>_<slice>.jpeg; returns the file count."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"--export {out} is a file; pass a new or empty folder")
    if out.is_dir() and any(p.is_file() for p in out.rglob("*")) and not force:
        raise DataError(f"--export {out} already holds files; pass an empty folder, or add --force to write into it")
    written, top = 0, (DEMO_RES - EXPORT_HEIGHT) // 2
    for split in SPLITS:
        for class_name in CLASSES:
            s = load_slices("demo", class_name, split, DEMO_RES, demo_count=count, seed=seed, cache_dir=cache_dir,
                            band=band)
            folder = out / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            slice_no = {}
            for img, subject in zip(s.images[:, 0, top:top + EXPORT_HEIGHT].numpy(), s.subjects):
                slice_no[subject] = slice_no.get(subject, -1) + 1
                core.save_image_atomic(Image.fromarray(img), folder / f"{subject}_{slice_no[subject]:02d}.jpeg",
                                       quality=95)
                written += 1
    return written


def _report(count: int, seed: int, cache_dir: str | None, band) -> None:
    stats = {}
    for class_name in CLASSES:
        s = load_slices("demo", class_name, "train", DEMO_RES, demo_count=count, seed=seed, cache_dir=cache_dir,
                        band=band)
        stats[class_name] = {"CSF": csf_fraction(s.images), "ventricle": ventricle_fraction(s.images)}
    print(f"demo set, {count} slices per class at {DEMO_RES}x{DEMO_RES}, seed {seed}: "
          f"fraction of the brain area that is CSF")
    print(f"{'measure':<10} {'AD mean ± std':>18} {'NC mean ± std':>18} {'AD - NC':>9} {'/ pooled std':>13} "
          f"{'/ std error':>11}")
    for measure in ("CSF", "ventricle"):
        ad, nc = stats["AD"][measure], stats["NC"][measure]
        diff = (ad.mean() - nc.mean()).item()
        pooled = math.sqrt((ad.var().item() + nc.var().item()) / 2)
        std_error = math.sqrt((ad.var().item() + nc.var().item()) / count)  # of the difference of means
        print(f"{measure:<10} {ad.mean():>9.4f} ± {ad.std():.4f} {nc.mean():>9.4f} ± {nc.std():.4f} "
              f"{diff:>9.4f} {diff / pooled:>13.2f} {diff / std_error:>11.1f}")


def _bench(slices: SliceSet, batch: int, device: torch.device, seconds: float = 0.5) -> None:
    gen = torch.Generator().manual_seed(0)
    res = 4
    while res <= slices.resolution:
        x = slices.at_resolution(res)
        n, start = 0, time.perf_counter()
        while n < 20 * batch or time.perf_counter() - start < seconds:
            idx = torch.randint(len(x), (batch,), generator=gen)
            prepare_batch(x.index_select(0, idx).to(device, non_blocking=True), gen)
            n += batch
        if device.type == "cuda":
            torch.cuda.synchronize()
        print(json.dumps({"res": res, "batch": batch, "images_per_s": round(n / (time.perf_counter() - start)),
                          "threads": torch.get_num_threads()}), flush=True)
        res *= 2


def _summary(s: SliceSet, seconds: float) -> None:
    hist = torch.bincount(s.images.flatten(), minlength=256).double()  # exact stats without a float copy of the set
    p, v = hist / hist.sum(), torch.arange(256, dtype=torch.float64)
    mean = (p * v).sum()
    used = torch.nonzero(hist)[:, 0]
    print(f"source:     {s.source}")
    print(f"class:      {s.class_name}, split {s.split}, {len(s)} slices from {len(set(s.subjects))} subjects")
    print(f"shape:      {tuple(s.images.shape)} uint8, {s.images.numel() / 2**20:.1f} MiB, loaded in {seconds:.1f} s")
    print(f"intensity:  mean {mean:.1f}, std {(p * (v - mean) ** 2).sum().sqrt():.1f}, min {used[0]}, max {used[-1]} "
          f"(0..255), background (0) {p[0]:.1%}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="demo", help="'demo' (default) or a folder of ADNI slices or NIfTI volumes")
    p.add_argument("--class", dest="class_name", default="AD", help="diagnosis class: AD or NC")
    p.add_argument("--split", default="train", help="train or test")
    p.add_argument("--resolution", type=int, default=256, help="final square resolution, a power of two")
    p.add_argument("--count", type=int, default=None,
                   help="demo slices per class and split (default 2000 train / 500 test; --report: 300 per class)")
    p.add_argument("--seed", type=int, default=0, help="demo set seed")
    p.add_argument("--band", type=float, nargs=2, default=DEFAULT_BAND, metavar=("LO", "HI"),
                   help="axial band of the brain's extent to take slices from (NIfTI and demo)")
    p.add_argument("--cache-dir", default=None,
                   help="demo cache folder (default $BRAIN_STYLEGAN_CACHE, else ~/.cache/brain-stylegan)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable files and report how many, instead of stopping")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--export", metavar="DIR",
                      help="write the demo set as 256x240 JPEGs in the ADNI layout under DIR")
    mode.add_argument("--report", action="store_true", help="compare CSF and ventricle area fractions of demo AD vs NC")
    mode.add_argument("--bench", action="store_true",
                      help="print the data pipeline's images/s at each resolution as JSON lines")
    mode.add_argument("--preview", metavar="PNG", help="save a 9x9 grid of slices spread over the set to PNG")
    p.add_argument("--force", action="store_true", help="with --export: write into a folder that already holds files")
    p.add_argument("--batch", type=int, default=32, help="with --bench: batch size")
    p.add_argument("--device", help="with --bench: device (default: CUDA when present, else cpu)")
    core.add_threads_flag(p)
    return p


def _preview(s: SliceSet, path: str) -> None:
    import modules  # the grid format of train.py's samples and predict.py

    n = min(81, len(s))
    pick = torch.linspace(0, len(s) - 1, n).round().long()  # spread over subjects
    modules.save_image_grid(prepare_batch(s.images[pick], flip=False), path, nrow=9)
    print(f"saved {n} slices of {s.source} to {path}")


def command(args: argparse.Namespace) -> None:
    """The mode the flags ask for: --export, --report, --bench, --preview, or a summary of the slices."""
    if args.export:
        n = export_demo(args.export, args.count, args.seed, args.force, args.cache_dir, tuple(args.band))
        print(f"wrote {n} JPEGs under {args.export}")
        return
    if args.report:
        _report(args.count or 300, args.seed, args.cache_dir, tuple(args.band))
        return
    device = core.choose_device(args.device) if args.bench else None
    start = time.perf_counter()
    s = load_slices(args.data, args.class_name, args.split, args.resolution, skip_bad=args.skip_bad,
                    demo_count=args.count, seed=args.seed, cache_dir=args.cache_dir, band=tuple(args.band))
    if s.skipped:
        print(f"skipped {s.skipped} unreadable files (--skip-bad)", file=sys.stderr)
    if args.bench:
        _bench(s, args.batch, device)
    elif args.preview:
        _preview(s, args.preview)
    else:
        _summary(s, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    core.set_threads(args.threads)
    return core.run(command, args)


if __name__ == "__main__":
    sys.exit(main())
