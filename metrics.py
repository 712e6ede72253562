"""The metrics of evaluate.py as pure functions of images, feature rows or per-image values: no files, no models
but the feature network passed in.

- SWD (ProGAN): sliced Wasserstein distance of Laplacian-pyramid patches.
- Frechet distance and KID (torchmetrics) in the space of a feature network; k-NN precision and recall.
- MS-SSIM of random pairs (diversity); the memorization audit (nearest training row, percentile threshold).
- Statistics of one number per image (a biomarker such as dataset.csf_fraction): mean and SD, 1-D Wasserstein-1
  distance, the difference of two groups' means with a bootstrap 95% interval, Cohen's d; the AD - NC
  comparison of generated and real biomarkers (class_difference).
- Partners, the images of one seed from two children of one parent: paired biomarker differences, SSIM of
  partners against random AD/NC pairs (paired_comparison).
- metrics_of: every metric of one column of evaluate.py's table.
"""
from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image import MultiScaleStructuralSimilarityIndexMeasure
from torchmetrics.image.fid import FrechetInceptionDistance  # not re-exported without torch-fidelity
from torchmetrics.image.kid import KernelInceptionDistance

from core import CLASSES

MIN_RES = 16                # SWD's coarsest pyramid level
SWD_PATCH = 7               # neighbourhood side (ProGAN)
SWD_PATCHES = 128           # neighbourhoods per image and level
SWD_REPEATS, SWD_DIRS = 4, 128   # 4 x 128 = 512 random directions
KNN_K = 3                   # Kynkaanniemi et al. 2019
LARGE_EFFECT = 0.8          # Cohen's convention for a large effect: 'clearly' more alike partners
MSSSIM_PAIRS = 1000         # random pairs for the diversity score
MSSSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # fine -> coarse (Wang et al. 2003)
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
MEMO_PERCENTILE = 1.0       # generated images nearer than this percentile of held-out reals are flagged
PIXEL_RES = 64              # the audit compares pixels at most at 64x64 (copies stay copies; 256x256 is slow)
BATCH = 256


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters(), torch.empty(0)).device

# ----------------------------------------------------------------------------- sliced Wasserstein distance

_BINOMIAL5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
_GAUSS5 = (torch.outer(_BINOMIAL5, _BINOMIAL5) / 256.0)[None, None]  # cv2.pyrDown's filter


def _filter5(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel.to(x))


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass images (N, 1, R, R) -> [R, R/2, ...] with `levels` entries, the last the low-pass residual.

    pyrDown / pyrUp as OpenCV (5x5 binomial filter, mirrored edges); summing the levels back up
    (upsampling from the coarsest) restores the images exactly."""
    pyramid = [images.float()]
    for _ in range(levels - 1):
        down = _filter5(pyramid[-1], _GAUSS5)[:, :, ::2, ::2]
        pyramid[-1] = pyramid[-1] - pyr_up(down)
        pyramid.append(down)
    return pyramid


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    """Zero-stuff to twice the size, then the pyrDown filter x 4 (OpenCV's pyrUp)."""
    up = x.new_zeros(x.shape[0], x.shape[1], 2 * x.shape[2], 2 * x.shape[3])
    up[:, :, ::2, ::2] = x
    return _filter5(up, 4 * _GAUSS5)


def patch_descriptors(level: torch.Tensor, generator: torch.Generator, per_image: int = SWD_PATCHES,
                      size: int = SWD_PATCH) -> torch.Tensor:
    """`per_image` random size x size patches of each image (N, 1, H, W), flattened: (N * per_image, size**2),
    then normalised to mean 0 and std 1 over the whole set (ProGAN's per-level normalisation)."""
    n, _, h, w = level.shape
    half = size // 2
    img = torch.arange(n).repeat_interleave(per_image)[:, None, None]
    ys = torch.randint(half, h - half, (n * per_image, 1, 1), generator=generator)
    xs = torch.randint(half, w - half, (n * per_image, 1, 1), generator=generator)
    offset = torch.arange(-half, half + 1)
    desc = level[img, 0, ys + offset[:, None], xs + offset[None, :]].reshape(n * per_image, size * size)
    desc = desc - desc.mean()
    return desc / desc.std().clamp_min(1e-8)


def _sorted_rows(x: torch.Tensor) -> np.ndarray:
    return np.sort(x.numpy(), axis=1)  # numpy's SIMD sort: several times faster than torch.sort on a CPU


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator,
                       repeats: int = SWD_REPEATS, dirs: int = SWD_DIRS) -> float:
    """Mean over random unit directions of the 1D Wasserstein-1 distance between the projections of two
    equally many descriptors (rows): sort both projections, average the absolute differences."""
    if a.shape != b.shape:
        raise ValueError(f"sliced_wasserstein needs two equal-shaped sets, got {tuple(a.shape)} and {tuple(b.shape)}")
    total = 0.0
    with ThreadPoolExecutor(max(1, min(2, torch.get_num_threads()))) as pool:  # numpy sorts without the GIL
        for _ in range(repeats):
            d = torch.randn(a.shape[1], dirs, generator=generator)
            d = d / d.norm(dim=0, keepdim=True)
            sa, sb = pool.map(_sorted_rows, ((a @ d).T.contiguous(), (b @ d).T.contiguous()))  # (dirs, N) each
            total += float(np.abs(sa - sb).mean(dtype=np.float64))
    return total / repeats


def swd(real: torch.Tensor, fake: torch.Tensor, seed: int, min_res: int = MIN_RES) -> dict[str, float]:
    """ProGAN's SWD x 1e3 per pyramid level, from the images' resolution down to `min_res`, and their mean.

    real and fake: equally many images (N, 1, R, R), any numeric dtype. Both sets are sampled at the same
    patch positions and projected on the same directions (common random numbers: identical sets give
    exactly 0), and one seed gives the same ones in every call."""
    if real.shape != fake.shape:
        raise ValueError(f"swd needs equally many images of one size, got {tuple(real.shape)} and {tuple(fake.shape)}")
    res = real.shape[-1]
    levels = int(math.log2(res // min_res)) + 1
    out = {}
    for i, (lr, lf) in enumerate(zip(laplacian_pyramid(real, levels), laplacian_pyramid(fake, levels))):
        da = patch_descriptors(lr, torch.Generator().manual_seed(seed + i))
        db = patch_descriptors(lf, torch.Generator().manual_seed(seed + i))
        out[str(res >> i)] = 1e3 * sliced_wasserstein(da, db, torch.Generator().manual_seed(seed + 1000 + i))
    out["mean"] = sum(out.values()) / len(out)
    return out


# ----------------------------------------------------------------------------- feature-space metrics

def _batches(images: torch.Tensor, device, batch: int = BATCH):
    return (x.to(device) for x in images.split(batch))


def frechet_distance(feature: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch: int = BATCH) -> float:
    """torchmetrics' FID with `feature` (a module with num_features, fed the uint8 images as they are)."""
    device = _device(feature)
    fid = FrechetInceptionDistance(feature=feature, normalize=False, input_img_size=tuple(real.shape[1:])).to(device)
    for x in _batches(real, device, batch):
        fid.update(x, real=True)
    for x in _batches(fake, device, batch):
        fid.update(x, real=False)
    return fid.compute().item()


def kernel_distance(feature: nn.Module, real: torch.Tensor, fake: torch.Tensor, seed: int,
                    subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                    batch: int = BATCH) -> tuple[float, float]:
    """torchmetrics' KID (mean, std over subsets) with `feature`; subsets of min(subset_size, N) images."""
    device = _device(feature)
    with warnings.catch_warnings():  # "will save all extracted features in buffer": yes, a few MB
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=feature, subsets=subsets,
                                      subset_size=min(subset_size, len(real), len(fake))).to(device)
    for x in _batches(real, device, batch):
        kid.update(x, real=True)
    for x in _batches(fake, device, batch):
        kid.update(x, real=False)
    with torch.random.fork_rng():  # KID draws its subsets from the global generator
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return mean.item(), std.item()


def kth_neighbour_distance(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) distance from each row to its k-th nearest other row."""
    d = torch.cdist(x.double(), x.double())
    return d.topk(k + 1, dim=1, largest=False).values[:, k]  # column 0 is the row itself


def knn_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = KNN_K) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of feature rows.

    precision: fraction of fake rows inside the k-NN ball of some real row (are samples realistic?);
    recall: fraction of real rows inside the k-NN ball of some fake row (is the data covered?)."""
    d = torch.cdist(fake.double(), real.double())  # (n_fake, n_real)
    precision = (d <= kth_neighbour_distance(real, k)[None, :]).any(dim=1).double().mean().item()
    recall = (d.T <= kth_neighbour_distance(fake, k)[None, :]).any(dim=1).double().mean().item()
    return precision, recall
def class_fidelity(predicted: torch.Tensor, class_name: str) -> float:
    """Fraction of predicted class indices (encoder outputs) that are `class_name`."""
    return predicted.eq(CLASSES.index(class_name)).double().mean().item()


# ----------------------------------------------------------------------------- diversity and memorization

def msssim_settings(resolution: int) -> dict:
    """MS-SSIM scales that fit the image: 11x11 Gaussian windows (sigma 1.5) from 64x64, 7x7 (sigma 1) below;
    as many scales (at most 5) as keep the coarsest at least `kernel` px wide and pass torchmetrics' size check;
    the standard betas of those scales, renormalised to sum to 1."""
    kernel, sigma = (11, 1.5) if resolution >= 64 else (7, 1.0)
    scales = 5
    while scales > 1 and (resolution >> (scales - 1) < kernel or resolution // max(1, scales - 1) ** 2 <= kernel - 1):
        scales -= 1
    betas = MSSSIM_BETAS[:scales]
    return {"kernel_size": kernel, "sigma": sigma, "betas": tuple(round(b / sum(betas), 4) for b in betas)}


def ms_ssim_diversity(images: torch.Tensor, seed: int, pairs: int = MSSSIM_PAIRS, batch: int = BATCH) -> float:
    """Mean MS-SSIM over `pairs` random pairs of distinct images (uint8 (N, 1, R, R)); lower = more diverse."""
    gen = torch.Generator().manual_seed(seed)
    n = len(images)
    i = torch.randint(n, (pairs,), generator=gen)
    j = (i + torch.randint(1, n, (pairs,), generator=gen)) % n  # never i itself
    metric = MultiScaleStructuralSimilarityIndexMeasure(data_range=1.0, **msssim_settings(images.shape[-1]))
    for a, b in zip(i.split(batch), j.split(batch)):
        metric.update(images[a].float() / 255, images[b].float() / 255)
    return metric.compute().item()


def nearest(query: torch.Tensor, bank: torch.Tensor, chunk: int = 512,
            exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each query row's nearest bank row (Euclidean), skipping the pairs where the bool
    matrix `exclude` (n_query, n_bank) is True. The search uses fast matrix products in the rows' float type
    (float32 for integer rows); the distance to the row found is then recomputed directly in float64, so an
    exact copy is at 0."""
    dtype = torch.promote_types(query.dtype, bank.dtype)
    dtype = dtype if dtype.is_floating_point else torch.float32
    idx = []
    for start in range(0, len(query), chunk):
        d = torch.cdist(query[start:start + chunk].to(dtype), bank.to(dtype))
        if exclude is not None:
            d[exclude[start:start + chunk]] = math.inf
        idx.append(d.argmin(dim=1))
    idx = torch.cat(idx)
    return (query.double() - bank[idx].double()).norm(dim=1), idx


@dataclass
class Audit:
    """Memorization audit in one space (features or pixels)."""
    distance: torch.Tensor       # (N_gen,) to the nearest training row
    index: torch.Tensor          # (N_gen,) which training row
    test_distance: torch.Tensor  # (N_test,) held-out reals to their nearest training row
    threshold: float             # the MEMO_PERCENTILE-th percentile of test_distance
    flagged: torch.Tensor        # (N_gen,) bool: distance < threshold

    @property
    def fraction(self) -> float:
        return self.flagged.double().mean().item()


def memorization_audit(generated: torch.Tensor, test: torch.Tensor, train: torch.Tensor,
                       percentile: float = MEMO_PERCENTILE) -> Audit:
    """Flag generated rows nearer to a training row than `percentile` % of held-out real rows are.

    Rows are feature vectors or flattened images. A generator that makes new images of the data's kind
    has ~percentile % flagged, as held-out reals have by construction; copies of training rows are all flagged."""
    dist, index = nearest(generated, train)
    test_dist, _ = nearest(test, train)
    threshold = torch.quantile(test_dist.double(), percentile / 100).item()
    return Audit(dist, index, test_dist, threshold, dist < threshold)


def pixels(images: torch.Tensor, max_res: int = PIXEL_RES) -> torch.Tensor:
    """uint8 (N, 1, R, R) -> (N, r*r), area-downsampled to r = min(R, max_res) and scaled so that the
    Euclidean distance is the RMS difference of intensities in [0, 1]."""
    x = images.float() / 255.0
    if x.shape[-1] > max_res:
        x = F.avg_pool2d(x, x.shape[-1] // max_res)
    return x.flatten(1) / x[0].numel() ** 0.5


def with_mirrors(images: torch.Tensor) -> torch.Tensor:
    """The images, then their left-right mirror images (the generator trained on randomly flipped slices)."""
    return torch.cat([images, images.flip(-1)])


# ----------------------------------------------------------------------------- one number per image (biomarkers)

BOOTSTRAP_RESAMPLES = 2000


def _values(x) -> np.ndarray:
    v = np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values")
    return v


def mean_sd(x) -> dict[str, float]:
    """{"mean", "sd"} of per-image values; sd with n - 1 (0 for one value)."""
    v = _values(x)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def wasserstein1(a, b) -> float:
    """1-D Wasserstein-1 distance between two samples of values (the area between their empirical CDFs):
    0 for identical samples, the shift for a shifted copy; sample sizes may differ."""
    return float(stats.wasserstein_distance(_values(a), _values(b)))


def relative_difference(value: float, reference: float) -> float | None:
    """(value - reference) / reference, or None where the reference is 0."""
    return (value - reference) / reference if reference != 0 else None


BIOMARKER_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def biomarker_comparison(generated, real_train, real_test) -> dict:
    """One biomarker's per-image values of the generated images against the real training slices, beside the
    floor (held-out reals against the same training slices): means and SDs, Wasserstein-1 distances, the
    generated mean's error relative to the training mean, and each set's quantiles (`BIOMARKER_QUANTILES`,
    numpy's linear interpolation): a mean can fall short because every value is small or because the upper
    tail is missing, and only the quantiles tell which."""
    gen, train, test = mean_sd(generated), mean_sd(real_train), mean_sd(real_test)
    sets = {"generated": generated, "real_train": real_train, "real_test": real_test}
    return {"generated": gen, "real_train": train, "real_test": test,
            "wasserstein": wasserstein1(generated, real_train),
            "wasserstein_floor": wasserstein1(real_test, real_train),
            "relative_error": relative_difference(gen["mean"], train["mean"]),
            "quantiles": {"at": list(BIOMARKER_QUANTILES),
                          **{k: np.quantile(_values(v), BIOMARKER_QUANTILES).tolist() for k, v in sets.items()}}}


def dark_comparison(generated, real_train, levels) -> dict:
    """One biomarker's means at several `dark` cuts (dataset.dark_profile) of the generated images beside the
    training slices', and each generated mean's error relative to the training one (None where that is 0)."""
    return {"at": list(levels), "generated": list(generated), "real_train": list(real_train),
            "relative_error": [relative_difference(g, r) for g, r in zip(generated, real_train)]}


def cohens_d(a, b) -> float:
    """(mean(a) - mean(b)) / pooled SD, the pooled variance weighting each group's (n - 1); 0 where both are
    constant and equal, +-inf where only the means differ."""
    a, b = _values(a), _values(b)
    if a.size + b.size < 3:
        raise ValueError("Cohen's d needs at least 3 values in all")
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1 if a.size > 1 else 0) +
                        (b.size - 1) * b.var(ddof=1 if b.size > 1 else 0)) / (a.size + b.size - 2))
    diff = float(a.mean() - b.mean())
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / pooled


def bootstrap_difference_ci(a, b, seed: int, resamples: int = BOOTSTRAP_RESAMPLES,
                            level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b): each group resampled with replacement on its own,
    `resamples` times (vectorised, in chunks); the same seed gives the same interval."""
    a, b = _values(a), _values(b)
    rng = np.random.default_rng(seed)
    return _bootstrap_interval(lambda k: a[rng.integers(0, a.size, (k, a.size))].mean(1) -
                               b[rng.integers(0, b.size, (k, b.size))].mean(1), max(a.size, b.size), resamples, level)


def bootstrap_mean_ci(x, seed: int, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(x) (e.g. of paired differences: each pair resampled as one)."""
    v = _values(x)
    rng = np.random.default_rng(seed)
    return _bootstrap_interval(lambda k: v[rng.integers(0, v.size, (k, v.size))].mean(1), v.size, resamples, level)


def _bootstrap_interval(draw, size: int, resamples: int, level: float) -> tuple[float, float]:
    """The percentile interval of `resamples` bootstrap statistics; draw(k) gives k of them from resamples of
    `size` values, called in chunks of about 32 MB of indices per group."""
    chunk = max(1, 2 ** 22 // size)
    values = np.concatenate([draw(min(chunk, resamples - start)) for start in range(0, resamples, chunk)])
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def group_difference(a, b, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """{"difference": mean(a) - mean(b), "ci95": its bootstrap interval [lo, hi], "cohens_d"}."""
    a, b = _values(a), _values(b)
    return {"difference": float(a.mean() - b.mean()), "ci95": list(bootstrap_difference_ci(a, b, seed, resamples)),
            "cohens_d": cohens_d(a, b)}


def reproduction(generated_difference: float, real_difference: float, min_ratio: float = 0.5) -> dict:
    """Does a generated group difference reproduce the real one? {"ratio": generated / real (None where the real
    difference is 0), "reproduced": same sign and ratio >= min_ratio}."""
    if real_difference == 0:
        return {"ratio": None, "reproduced": False}
    ratio = generated_difference / real_difference
    return {"ratio": ratio, "reproduced": bool(ratio >= min_ratio)}  # ratio > 0 <=> same sign


def class_difference(values: dict[str, dict], fidelity: dict[str, float], seed: int) -> dict:
    """AD - NC of each biomarker's mean, in the generated images and in the real training slices, and whether the
    generators reproduce the real difference. values: class -> dataset.biomarker_values(generated=..., real_train=...);
    fidelity: class -> the encoder's class fidelity of that class's generated images."""
    out = {}
    for name in values["AD"]:
        diff = {column: group_difference(values["AD"][name][key], values["NC"][name][key], seed)
                for column, key in (("generated", "generated"), ("real", "real_train"))}
        out[name] = {**diff, **reproduction(diff["generated"]["difference"], diff["real"]["difference"])}
    out["class_fidelity"] = {**fidelity, "mean": sum(fidelity[c] for c in CLASSES) / len(CLASSES)}
    return out


# ----------------------------------------------------------------------------- partners: children of one parent

def ssim_per_pair(a: torch.Tensor, b: torch.Tensor, batch: int = BATCH) -> torch.Tensor:
    """(N,) SSIM of a[i] with b[i] (uint8 (N, 1, R, R), compared as [0, 1] images; torchmetrics' SSIM with the
    Gaussian window of msssim_settings)."""
    s = msssim_settings(a.shape[-1])
    return torch.cat([structural_similarity_index_measure(x.float() / 255, y.float() / 255, data_range=1.0,
                                                          kernel_size=s["kernel_size"], sigma=s["sigma"],
                                                          reduction="none")
                      for x, y in zip(a.split(batch), b.split(batch))])


def derangement(n: int, seed: int) -> torch.Tensor:
    """A random permutation of range(n) (n >= 2) that moves every index: one random cycle through all of them."""
    cycle = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = torch.empty(n, dtype=torch.long)
    out[cycle] = cycle.roll(-1)
    return out


def paired_comparison(ad: torch.Tensor, nc: torch.Tensor, values: dict[str, dict], real_difference: dict[str, float],
                      seed: int) -> dict:
    """How AD and NC partners (ad[i] and nc[i]: uint8 images of one seed from two children of one parent) differ.

    values: biomarker -> {"AD": per-image values of `ad`, "NC": of `nc`} (needs "csf_fraction");
    real_difference: biomarker -> the real AD - NC difference of means, reported beside the paired one.
    Returns fraction_ad_more_csf (share of pairs whose AD partner has the higher csf_fraction), per biomarker
    the mean paired difference AD - NC with its bootstrap 95% interval, and how alike partners are: mean SSIM of
    the partners against that of random AD/NC pairs (ad[i] with nc[j], j a derangement of i), the mean gain with
    its interval and paired effect size, and partners_more_alike: "clearly" more alike, that is, the interval
    above 0 and a large effect (d_z >= LARGE_EFFECT; with 2000 seeds a trivial gain alone would pass)."""
    if len(ad) != len(nc) or len(ad) < 2:
        raise ValueError(f"paired_comparison needs two equally long image sets of 2 or more, got {len(ad)}, {len(nc)}")
    out = {"n_pairs": len(ad), "fraction_ad_more_csf":
           float(np.mean(_values(values["csf_fraction"]["AD"]) > _values(values["csf_fraction"]["NC"])))}
    for name, v in values.items():
        d = _values(v["AD"]) - _values(v["NC"])
        out[name] = {"mean_paired_difference": float(d.mean()), "ci95": list(bootstrap_mean_ci(d, seed)),
                     "real_difference": real_difference[name]}
    partners, strangers = ssim_per_pair(ad, nc), ssim_per_pair(ad, nc[derangement(len(nc), seed)])
    gain = (partners - strangers).double()
    ci = bootstrap_mean_ci(gain, seed)
    dz = gain.mean().item() / max(gain.std().item(), 1e-12)  # paired effect size (Cohen's d_z)
    out.update(ssim_pairs=partners.double().mean().item(), ssim_random=strangers.double().mean().item(),
               ssim_gain={"difference": gain.mean().item(), "ci95": list(ci), "cohens_dz": dz},
               partners_more_alike=bool(ci[0] > 0 and dz >= LARGE_EFFECT))
    return out


# ----------------------------------------------------------------------------- one column of evaluate.py's table

def metrics_of(query: torch.Tensor, query_pred: torch.Tensor, query_feats: torch.Tensor,
               ref: torch.Tensor, ref_feats: torch.Tensor, bank_feats: torch.Tensor, bank_pix: torch.Tensor,
               test_feats: torch.Tensor, test_pix: torch.Tensor, encoder: nn.Module, class_name: str,
               m: int, seed: int) -> tuple[dict, Audit]:
    """Every metric of one column: `query` (generated, or held-out reals) against the training reals.

    `encoder` is the feature network (encoder.Encoder); *_pred its class predictions, *_feats its features,
    *_pix `pixels` of the images. Returns the numbers and the pixel-space audit (for the closest pairs)."""
    dist_q, dist_f = query[:m], query_feats[:m]  # count-sensitive metrics: exactly m images in each column
    out = {"swd_x1e3": swd(ref, dist_q, seed)}
    out["frechet_distance"] = frechet_distance(encoder, ref, dist_q)
    out["kid"], out["kid_std"] = kernel_distance(encoder, ref, dist_q, seed)
    out["precision"], out["recall"] = knn_precision_recall(ref_feats, dist_f)
    out["class_fidelity"] = class_fidelity(query_pred, class_name)
    out["ms_ssim"] = ms_ssim_diversity(query, seed)
    audit_f = memorization_audit(query_feats, test_feats, bank_feats)
    audit_p = memorization_audit(pixels(query), test_pix, bank_pix)
    out.update(nn_distance_features_median=audit_f.distance.median().item(),
               nn_distance_pixels_median=audit_p.distance.median().item(),
               memorized_fraction_features=audit_f.fraction, memorized_fraction_pixels=audit_p.fraction,
               memorization_threshold_features=audit_f.threshold, memorization_threshold_pixels=audit_p.threshold)
    return out, audit_p
