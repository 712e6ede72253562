"""metrics.py: each metric on cases with known answers (hand computations, planted copies, shifted copies)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import dataset
import encoder
import metrics
from conftest import blobs


def noisy(images: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (images.float() + sigma * torch.randn(images.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)


class Flatten(nn.Module):
    """Identity feature 'network' for torchmetrics: features = the input's values."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x.flatten(1).double()


# ----------------------------------------------------------------------------- SWD

def test_laplacian_pyramid_sums_back_to_the_images_and_zeroes_flat_ones():
    x = blobs(3, 32, seed=0).float()
    pyramid = metrics.laplacian_pyramid(x, 2)
    assert [p.shape[-1] for p in pyramid] == [32, 16]
    torch.testing.assert_close(pyramid[0] + metrics.pyr_up(pyramid[1]), x, atol=1e-3, rtol=0)
    flat = metrics.laplacian_pyramid(torch.full((2, 1, 32, 32), 7.0), 3)
    assert flat[0].abs().max() == 0 and flat[1].abs().max() == 0  # no detail: band-pass levels are zero
    torch.testing.assert_close(flat[2], torch.full((2, 1, 8, 8), 7.0))  # the residual keeps the level


def test_sliced_wasserstein_is_the_1d_wasserstein_distance_in_one_dimension():
    a, b = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[3.0], [1.0], [5.0]])
    g = torch.Generator().manual_seed(0)
    # every unit direction in 1D is +-1: sorted a = 0 1 2, sorted b = 1 3 5, mean |difference| = 2
    assert metrics.sliced_wasserstein(a, b, g, repeats=2, dirs=3) == pytest.approx(2.0)
    assert metrics.sliced_wasserstein(a, a + 0.5, g, repeats=1, dirs=3) == pytest.approx(0.5)


def test_swd_is_zero_for_identical_sets_and_grows_with_noise():
    real = blobs(48, 32, seed=0)
    same = metrics.swd(real, real.clone(), seed=0)
    assert list(same) == ["32", "16", "mean"] and all(v == 0 for v in same.values())
    means = [metrics.swd(real, noisy(real, s), seed=0)["mean"] for s in (4, 16, 48)]
    assert 0 < means[0] < means[1] < means[2], means
    assert metrics.swd(real, noisy(real, 16), seed=0) == metrics.swd(real, noisy(real, 16), seed=0)
    with pytest.raises(ValueError):
        metrics.swd(real, real[:10], seed=0)


# ----------------------------------------------------------------------------- feature-space metrics

def test_frechet_distance_of_a_shifted_copy_is_the_squared_shift():
    a = torch.randn(2000, 4, generator=torch.Generator().manual_seed(0))
    for shift in (0.0, 0.5, 2.0):  # same covariance, means `shift` apart: FD = shift^2 exactly
        b = a.clone()
        b[:, 1] += shift
        assert metrics.frechet_distance(Flatten(4), a, b) == pytest.approx(shift ** 2, abs=1e-6)


def test_encoder_distances_are_zero_for_identical_sets_and_grow_with_the_shift():
    torch.manual_seed(0)
    enc = encoder.Encoder(16).eval().requires_grad_(False)  # a fixed random encoder is enough here
    imgs = blobs(200, 16, seed=0) // 2  # room to brighten without clipping
    assert metrics.frechet_distance(enc, imgs, imgs.clone()) == pytest.approx(0, abs=1e-6)
    fds = [metrics.frechet_distance(enc, imgs, imgs + s) for s in (8, 24, 64)]
    kids = [metrics.kernel_distance(enc, imgs, imgs + s, seed=0, subsets=10)[0] for s in (0, 8, 24, 64)]
    assert 0 < fds[0] < fds[1] < fds[2], fds
    assert abs(kids[0]) < kids[1] < kids[2] < kids[3], kids


def test_knn_precision_recall_on_points_with_known_answers():
    real = torch.arange(10.0)[:, None]  # 0..9; the 3rd-neighbour radius is 3 at the ends, 2 inside
    pr = metrics.knn_precision_recall
    assert pr(real, real.clone()) == (1.0, 1.0)
    # 4.5 lies in the ball of 4 (radius 2), the rest nowhere; the fakes' own balls are huge and cover all reals
    assert pr(real, torch.tensor([[4.5], [100.0], [200.0], [300.0]])) == (0.25, 1.0)
    # fakes 0..3 are all real points; their balls (radius 3, 2, 2, 3) cover reals 0..6
    assert pr(real, torch.arange(4.0)[:, None]) == (1.0, pytest.approx(0.7))
    assert pr(real, 1000 + torch.arange(10.0)[:, None]) == (0.0, 0.0)


def test_class_fidelity_counts_the_generators_class():
    predicted = torch.tensor([0, 0, 1, 0])  # class indices in dataset.CLASSES order: AD, NC
    assert metrics.class_fidelity(predicted, "AD") == 0.75
    assert metrics.class_fidelity(predicted, "NC") == 0.25


# ----------------------------------------------------------------------------- diversity and memorization

@pytest.mark.parametrize("res", [16, 32, 64])
def test_ms_ssim_is_one_for_copies_and_low_for_unrelated_images(res):
    s = metrics.msssim_settings(res)
    assert res >> (len(s["betas"]) - 1) >= s["kernel_size"] and sum(s["betas"]) == pytest.approx(1, abs=1e-3)
    copies = blobs(1, res, seed=0).expand(20, -1, -1, -1)
    assert metrics.ms_ssim_diversity(copies, seed=0, pairs=20) == pytest.approx(1.0, abs=1e-4)
    noise = torch.randint(0, 256, (20, 1, res, res), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert metrics.ms_ssim_diversity(noise, seed=0, pairs=20) < 0.2


def test_memorization_audit_flags_a_planted_copy_and_not_new_images():
    train, test, fresh = blobs(100, 16, seed=1), blobs(100, 16, seed=2), blobs(30, 16, seed=3)
    bank = metrics.pixels(metrics.with_mirrors(train))
    clean = metrics.memorization_audit(metrics.pixels(fresh), metrics.pixels(test), bank)
    assert clean.fraction <= 0.05  # new images of the same kind: ~1%, like held-out reals
    planted = torch.cat([fresh, train[7:8].flip(-1)])  # a mirrored copy of training image 7
    audit = metrics.memorization_audit(metrics.pixels(planted), metrics.pixels(test), bank)
    assert audit.flagged[-1] and audit.distance[-1] == 0 and audit.index[-1] == 100 + 7  # its mirror in the bank
    assert audit.flagged[:-1].tolist() == clean.flagged.tolist()
    assert audit.threshold == pytest.approx(torch.quantile(audit.test_distance.double(), 0.01).item())




def test_nearest_finds_exact_copies_and_skips_excluded_pairs():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    query = torch.tensor([[3.0, 4.0], [9.0, 0.0], [0.1, 0.0]])
    dist, idx = metrics.nearest(query, bank, chunk=2)  # chunks of 2 rows: the mask must follow the chunks
    assert idx.tolist() == [1, 2, 0] and dist.tolist() == pytest.approx([0.0, 1.0, 0.1])
    exclude = torch.tensor([[False, True, False], [False, False, False], [True, False, False]])
    dist, idx = metrics.nearest(query, bank, chunk=2, exclude=exclude)
    assert idx.tolist() == [0, 2, 1]  # row 0 without its copy: (0, 0) at 5 is nearer than (10, 0) at 8.06
    assert dist.tolist() == pytest.approx([5.0, 1.0, math.hypot(2.9, 4.0)])
    assert dist.dtype == torch.float64  # recomputed directly, not read off the matrix product


def test_pixels_are_rms_differences_at_the_reduced_size():
    a = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    b = a.clone()
    b[..., :4, :] = 255  # half the pixels differ by the full range: RMS = sqrt(1/2)
    pa, pb = metrics.pixels(a, max_res=4), metrics.pixels(b, max_res=4)
    assert pa.shape == (1, 16)  # 8x8 area-downsampled to 4x4
    assert (pa - pb).norm().item() == pytest.approx(math.sqrt(0.5))
    c = torch.tensor([[0, 255], [255, 255]], dtype=torch.uint8).repeat(4, 4)[None, None]  # 8x8 checks
    assert metrics.pixels(c, max_res=4).tolist() == [[0.75 / 4] * 16]  # each 2x2 area: mean 3/4, over sqrt(16)


def test_class_difference_against_a_hand_computation():
    values = {"AD": {"csf_fraction": {"generated": np.array([0.30, 0.34]), "real_train": np.array([0.2, 0.3, 0.4])}},
              "NC": {"csf_fraction": {"generated": np.array([0.20, 0.24]), "real_train": np.array([0.1, 0.2])}}}
    out = metrics.class_difference(values, {"AD": 0.9, "NC": 0.6}, seed=0)
    csf = out["csf_fraction"]
    assert csf["generated"]["difference"] == pytest.approx(0.10)  # 0.32 - 0.22
    assert csf["real"]["difference"] == pytest.approx(0.15)       # 0.30 - 0.15
    assert csf["ratio"] == pytest.approx(2 / 3) and csf["reproduced"] is True
    # generated: both groups have SD^2 0.0008, so the pooled SD is sqrt(0.0008) and d = 0.1 / 0.02828
    assert csf["generated"]["cohens_d"] == pytest.approx(0.1 / math.sqrt(0.0008))
    assert out["class_fidelity"] == {"AD": 0.9, "NC": 0.6, "mean": pytest.approx(0.75)}


# ----------------------------------------------------------------------------- partners (children of one parent)

def drawn_slices(dark_side: int) -> tuple[torch.Tensor, list[int]]:
    """Six 32x32 'slices': a bright disk (brain, 200), each of its own size and place, holding a dark square
    (CSF, 20) of dark_side x dark_side pixels near its centre; and each disk's area in pixels."""
    images, areas = torch.zeros(6, 1, 32, 32, dtype=torch.uint8), []
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    for i, (cy, cx, r) in enumerate([(15, 15, 12), (16, 17, 10), (17, 14, 11), (14, 16, 13), (16, 15, 9),
                                     (15, 17, 12)]):
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        images[i, 0][disk] = 200
        y0, x0 = cy - 3 + i % 3, cx - 4 + i % 2  # well inside the disk, away from its outline
        images[i, 0, y0:y0 + dark_side, x0:x0 + dark_side] = 20
        areas.append(int(disk.sum()))
    return images, areas


def test_paired_comparison_on_drawn_slices_with_enlarged_csf():
    nc, areas = drawn_slices(3)
    ad, _ = drawn_slices(5)  # the same slices, the dark square grown from 3x3 to 5x5
    csf = {"AD": dataset.csf_fraction(ad).double().numpy(), "NC": dataset.csf_fraction(nc).double().numpy()}
    np.testing.assert_allclose(csf["NC"], [9 / a for a in areas], rtol=1e-6)  # the square over the whole disk
    np.testing.assert_allclose(csf["AD"], [25 / a for a in areas], rtol=1e-6)
    ventricles = {"AD": np.full(6, 0.5), "NC": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])}
    out = metrics.paired_comparison(ad, nc, {"csf_fraction": csf, "ventricle_fraction": ventricles},
                                    {"csf_fraction": 0.02, "ventricle_fraction": 0.03}, seed=0)
    assert out["n_pairs"] == 6 and out["fraction_ad_more_csf"] == 1.0
    want = np.mean([16 / a for a in areas])  # (25 - 9) / area, averaged over the pairs
    c = out["csf_fraction"]
    assert c["mean_paired_difference"] == pytest.approx(want) and c["real_difference"] == 0.02
    assert min(16 / a for a in areas) <= c["ci95"][0] <= want <= c["ci95"][1] <= max(16 / a for a in areas)
    v = out["ventricle_fraction"]  # paired differences 0.4, 0.3, ..., -0.1: mean 0.15
    assert v["mean_paired_difference"] == pytest.approx(0.15) and v["real_difference"] == 0.03
    assert -0.1 <= v["ci95"][0] < 0.15 < v["ci95"][1] <= 0.4
    assert out["ssim_random"] < 0.6 < 0.8 < out["ssim_pairs"] < 1  # partners differ by a ring of 16 pixels
    assert out["ssim_gain"]["difference"] == pytest.approx(out["ssim_pairs"] - out["ssim_random"])
    assert out["ssim_gain"]["ci95"][0] > 0 and out["partners_more_alike"] is True
    gain = (metrics.ssim_per_pair(ad, nc) - metrics.ssim_per_pair(ad, nc[metrics.derangement(6, 0)])).double()
    assert out["ssim_gain"]["cohens_dz"] == pytest.approx((gain.mean() / gain.std()).item())
    # a gain that is real (interval above 0) but small against its spread is not "clearly" more alike
    noisy = metrics.paired_comparison(ad, torch.cat([nc[:3], 255 - nc[3:]]), {"csf_fraction": csf},
                                      {"csf_fraction": 0.02}, seed=0)
    assert noisy["ssim_gain"]["cohens_dz"] < metrics.LARGE_EFFECT and noisy["partners_more_alike"] is False
    same = metrics.paired_comparison(nc, nc, {"csf_fraction": {"AD": csf["NC"], "NC": csf["NC"]}},
                                     {"csf_fraction": 0.02}, seed=0)
    assert same["ssim_pairs"] == pytest.approx(1) and same["fraction_ad_more_csf"] == 0  # not more: equal
    assert same["csf_fraction"]["mean_paired_difference"] == 0 == same["csf_fraction"]["ci95"][0]


def test_ssim_per_pair_and_derangement():
    a = blobs(5, 16, seed=0)
    assert metrics.ssim_per_pair(a, a).tolist() == pytest.approx([1.0] * 5)
    assert (metrics.ssim_per_pair(a, 255 - a) < 0.5).all()
    for n in (2, 3, 50):
        p = metrics.derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n)) and (p != torch.arange(n)).all()
    assert metrics.derangement(50, 1).tolist() == metrics.derangement(50, 1).tolist()
    assert metrics.bootstrap_mean_ci([0.3] * 7, seed=0) == (pytest.approx(0.3), pytest.approx(0.3))
