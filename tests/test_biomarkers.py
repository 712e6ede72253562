"""dataset.csf_fraction / ventricle_fraction on drawn slices with known CSF areas and on the demo set, and the
statistics evaluate.py reports about them (metrics.py): Wasserstein-1, bootstrap interval, Cohen's d."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dataset
import metrics


def disc(res: int, boxes=(), value: int = 200, box_value: int = 30, supersample: int = 1) -> torch.Tensor:
    """uint8 (1, 1, res, res): a bright disc of radius 0.4 res at the centre with dark rectangles
    (top, left, height, width in pixels of the res x res image) drawn inside it. With supersample > 1 it is
    drawn that much larger and area-downsampled, so its outline is made of partial-volume (grey) pixels as in
    a real low-resolution slice."""
    big = res * supersample
    yy, xx = np.mgrid[:big, :big] + 0.5
    img = np.where((yy - big / 2) ** 2 + (xx - big / 2) ** 2 <= (0.4 * big) ** 2, float(value), 0.0)
    for top, left, h, w in boxes:
        img[top * supersample:(top + h) * supersample, left * supersample:(left + w) * supersample] = box_value
    x = torch.tensor(img, dtype=torch.float32)[None, None]
    if supersample > 1:
        x = F.avg_pool2d(x, supersample)
    return x.round().to(torch.uint8)


def brain_pixels(img: torch.Tensor) -> int:
    return int((img > 0).sum())


def test_csf_fraction_is_the_dark_area_over_the_brain_area():
    for res, box in ((64, (26, 24, 8, 12)), (32, (13, 12, 4, 6))):
        img = disc(res, [box])
        expected = box[2] * box[3] / brain_pixels(img)
        assert dataset.csf_fraction(img).item() == pytest.approx(expected, rel=1e-6)
        assert dataset.csf_fraction(disc(res)).item() == 0  # uniform tissue: no CSF


@pytest.mark.parametrize("res", [32, 64])
def test_csf_fraction_ignores_the_partial_volume_outline(res):
    """An antialiased outline is dark, like CSF; counted, it would add ~perimeter/area (0.05-0.1 here)."""
    box = (res * 13 // 32, res * 12 // 32, res // 8, res * 3 // 16)
    img = disc(res, [box], supersample=8)
    expected = box[2] * box[3] / (math.pi * (0.4 * res) ** 2)
    rim = int(((img > 0) & (img < 0.45 * 200)).sum()) - box[2] * box[3]
    assert rim / brain_pixels(img) > 0.03  # counted, the outline alone would be 3x the tolerance below
    assert dataset.csf_fraction(img).item() == pytest.approx(expected, abs=0.01)


def test_ventricle_fraction_sees_a_central_dark_box_and_not_a_peripheral_one():
    res = 64
    central = disc(res, [(26, 28, 12, 8)])   # the middle of the brain: where the lateral ventricles lie
    peripheral = disc(res, [(28, 10, 8, 8)])  # inside the brain but near its left edge (a widened sulcus)
    assert dataset.csf_fraction(central).item() == pytest.approx(96 / brain_pixels(central), rel=1e-6)
    assert dataset.csf_fraction(peripheral).item() == pytest.approx(64 / brain_pixels(peripheral), rel=1e-6)
    assert dataset.ventricle_fraction(central).item() > 0.15
    assert dataset.ventricle_fraction(peripheral).item() == 0
    assert dataset.ventricle_fraction(disc(res)).item() == 0


def test_biomarkers_ignore_background_specks_and_empty_slices():
    img = disc(64, [(26, 28, 12, 8)])
    specked = img.clone()
    specked[0, 0, 1:3, 1:3] = 255  # a bright speck in a corner, as a generator may draw
    specked[0, 0, 60, 2] = 180
    for f in (dataset.csf_fraction, dataset.ventricle_fraction):
        assert f(specked).item() == f(img).item()
        assert f(torch.zeros(2, 1, 32, 32, dtype=torch.uint8)).tolist() == [0.0, 0.0]
        assert torch.equal(f(img[:, 0]), f(img))  # (N, R, R) as well as (N, 1, R, R)
        with pytest.raises(ValueError, match="uint8"):
            f(img.float())


@pytest.mark.parametrize("res", [32, 64, pytest.param(256, marks=pytest.mark.slow)])
def test_demo_ad_has_more_csf_and_larger_ventricles_than_nc(res):
    """The demo set's simulated atrophy, seen at the resolutions the generators are evaluated at and at the
    demo set's own 256x256."""
    values = {c: {f.__name__: f(dataset.load_slices("demo", c, "train", res, demo_count=200).images).double()
                  for f in (dataset.csf_fraction, dataset.ventricle_fraction)} for c in dataset.CLASSES}
    for name in ("csf_fraction", "ventricle_fraction"):
        ad, nc = values["AD"][name], values["NC"][name]
        standard_error = math.sqrt(ad.var() / len(ad) + nc.var() / len(nc))
        assert ad.mean() > 1.4 * nc.mean() and ad.mean() - nc.mean() > 5 * standard_error, (name, ad.mean(), nc.mean())
        assert metrics.cohens_d(ad, nc) > 0.6
    if res == 256:  # a plausible amount of CSF in the healthy slices' brain area
        assert 0.02 < values["NC"]["csf_fraction"].mean() < 0.2


# ----------------------------------------------------------------------------- statistics of per-image values

def test_wasserstein1_is_zero_for_identical_samples_and_the_shift_for_a_shifted_copy():
    x = np.random.default_rng(0).normal(0.1, 0.03, 500)
    assert metrics.wasserstein1(x, x.copy()) == 0
    assert metrics.wasserstein1(x, x + 0.02) == pytest.approx(0.02)
    assert metrics.wasserstein1([0, 1], [0, 0, 1, 1]) == 0  # sizes may differ
    assert metrics.wasserstein1(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, 5.0])) == pytest.approx(2.0)


def test_biomarker_comparison_layout_and_values():
    train = np.array([0.1, 0.2, 0.3, 0.4])
    r = metrics.biomarker_comparison(train * 1.5, train, train.copy())
    assert set(r) == {"generated", "real_train", "real_test", "wasserstein", "wasserstein_floor", "relative_error",
                      "quantiles"}
    # quantiles by linear interpolation: the median of 0.1..0.4 is 0.25, the 90th percentile 0.1 + 0.9 * 3 * 0.1
    q = r["quantiles"]
    assert q["at"] == [0.1, 0.25, 0.5, 0.75, 0.9]
    assert q["real_train"][2] == pytest.approx(0.25) and q["real_train"][4] == pytest.approx(0.37)
    assert q["generated"] == pytest.approx([1.5 * v for v in q["real_train"]]) and q["real_test"] == q["real_train"]
    assert r["real_train"] == {"mean": pytest.approx(0.25), "sd": pytest.approx(np.std(train, ddof=1))}
    assert r["relative_error"] == pytest.approx(0.5) and r["wasserstein_floor"] == 0
    assert r["wasserstein"] == pytest.approx(0.125)  # every value moved up by half of itself: mean 0.125
    assert metrics.biomarker_comparison([0.1, 0.2], [0.0, 0.0], [0.0])["relative_error"] is None


def test_cohens_d_against_a_hand_computation():
    a, b = [2.0, 4.0, 6.0], [1.0, 2.0, 3.0, 4.0]
    # means 4 and 2.5; variances (n-1) 4 and 5/3; pooled = (2*4 + 3*5/3) / 5 = 13/5
    assert metrics.cohens_d(a, b) == pytest.approx(1.5 / math.sqrt(13 / 5))
    assert metrics.cohens_d(b, a) == pytest.approx(-1.5 / math.sqrt(13 / 5))
    assert metrics.cohens_d([1.0, 1.0], [1.0, 1.0]) == 0


def test_bootstrap_interval_contains_a_known_shift_and_is_reproducible():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.10, 0.03, 400), rng.normal(0.06, 0.02, 300)
    lo, hi = metrics.bootstrap_difference_ci(a, b, seed=0)
    true_se = math.sqrt(0.03 ** 2 / 400 + 0.02 ** 2 / 300)
    assert lo < 0.04 < hi and lo < a.mean() - b.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * true_se, rel=0.2)  # the width of the normal-theory interval
    assert metrics.bootstrap_difference_ci(a, b, seed=0) == (lo, hi)
    assert metrics.bootstrap_difference_ci(a, b, seed=1) != (lo, hi)
    same = metrics.bootstrap_difference_ci(np.full(50, 0.2), np.full(60, 0.2), seed=0)
    assert same == (pytest.approx(0), pytest.approx(0))
    d = metrics.group_difference(a, b, seed=0)
    assert d == {"difference": pytest.approx(a.mean() - b.mean()), "ci95": [lo, hi],
                 "cohens_d": pytest.approx(metrics.cohens_d(a, b))}


def test_reproduction_needs_the_same_sign_and_half_the_size():
    assert metrics.reproduction(0.031, 0.047) == {"ratio": pytest.approx(0.66, abs=0.01), "reproduced": True}
    assert metrics.reproduction(0.02, 0.047)["reproduced"] is False  # same sign, 43%
    assert metrics.reproduction(-0.03, 0.047)["reproduced"] is False  # opposite sign
    assert metrics.reproduction(-0.03, -0.04)["reproduced"] is True
    assert metrics.reproduction(0.01, 0.0) == {"ratio": None, "reproduced": False}


def test_dark_profile_tells_a_lighter_ventricle_from_a_smaller_one():
    """A box at 0.5 of the tissue's brightness is CSF at the cut 0.6 only; a black box counts at every cut."""
    res = 64  # disc's tissue is 200: the grey box (100) is darker than 0.6 x 200, not than 0.45 x 200
    central = (26, 28, 12, 8)
    grey, black = disc(res, [central], box_value=100), disc(res, [central], box_value=30)
    assert dataset.DARK_LEVELS == (0.3, 0.45, 0.6)
    p_grey, p_black = dataset.dark_profile(grey), dataset.dark_profile(black)
    assert set(p_grey) == set(dataset.BIOMARKERS)
    area = 96 / brain_pixels(black)
    assert p_black["csf_fraction"] == pytest.approx([area] * 3, rel=1e-6)
    assert p_grey["csf_fraction"] == pytest.approx([0, 0, area], rel=1e-6)
    assert p_grey["ventricle_fraction"][:2] == [0, 0] and p_grey["ventricle_fraction"][2] > 0.15
    # the mean over a batch: one grey and one black image
    both = dataset.dark_profile(torch.cat([grey, black]))
    assert both["csf_fraction"] == pytest.approx([area / 2, area / 2, area], rel=1e-6)


def test_dark_comparison_errors_per_cut():
    r = metrics.dark_comparison([0.08, 0.1, 0.2], [0.1, 0.1, 0.0], (0.3, 0.45, 0.6))
    assert r["at"] == [0.3, 0.45, 0.6] and r["generated"] == [0.08, 0.1, 0.2]
    assert r["relative_error"][0] == pytest.approx(-0.2) and r["relative_error"][1] == 0
    assert r["relative_error"][2] is None  # a zero training mean: no relative error
