"""evaluate.py: each metric on cases with known answers, the encoder on the demo set, the CLI on a real tiny run."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import dataset
import evaluate
from conftest import ROOT


def blobs(n: int, res: int, seed: int) -> torch.Tensor:
    """uint8 (n, 1, res, res) smooth random images: brain-like in having structure at several scales."""
    g = torch.Generator().manual_seed(seed)
    x = sum(torch.nn.functional.interpolate(torch.randn(n, 1, s, s, generator=g), size=res, mode="bicubic",
                                            align_corners=True) / s ** 0.5 for s in (2, 4, 8))
    return ((x - x.min()) / (x.max() - x.min()) * 255).round().to(torch.uint8)


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
    pyramid = evaluate.laplacian_pyramid(x, 2)
    assert [p.shape[-1] for p in pyramid] == [32, 16]
    torch.testing.assert_close(pyramid[0] + evaluate.pyr_up(pyramid[1]), x, atol=1e-3, rtol=0)
    flat = evaluate.laplacian_pyramid(torch.full((2, 1, 32, 32), 7.0), 3)
    assert flat[0].abs().max() == 0 and flat[1].abs().max() == 0  # no detail: band-pass levels are zero
    torch.testing.assert_close(flat[2], torch.full((2, 1, 8, 8), 7.0))  # the residual keeps the level


def test_sliced_wasserstein_is_the_1d_wasserstein_distance_in_one_dimension():
    a, b = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[3.0], [1.0], [5.0]])
    g = torch.Generator().manual_seed(0)
    # every unit direction in 1D is +-1: sorted a = 0 1 2, sorted b = 1 3 5, mean |difference| = 2
    assert evaluate.sliced_wasserstein(a, b, g, repeats=2, dirs=3) == pytest.approx(2.0)
    assert evaluate.sliced_wasserstein(a, a + 0.5, g, repeats=1, dirs=3) == pytest.approx(0.5)


def test_swd_is_zero_for_identical_sets_and_grows_with_noise():
    real = blobs(48, 32, seed=0)
    same = evaluate.swd(real, real.clone(), seed=0)
    assert list(same) == ["32", "16", "mean"] and all(v == 0 for v in same.values())
    means = [evaluate.swd(real, noisy(real, s), seed=0)["mean"] for s in (4, 16, 48)]
    assert 0 < means[0] < means[1] < means[2], means
    assert evaluate.swd(real, noisy(real, 16), seed=0) == evaluate.swd(real, noisy(real, 16), seed=0)
    with pytest.raises(ValueError):
        evaluate.swd(real, real[:10], seed=0)


# ----------------------------------------------------------------------------- feature-space metrics

def test_frechet_distance_of_a_shifted_copy_is_the_squared_shift():
    a = torch.randn(2000, 4, generator=torch.Generator().manual_seed(0))
    for shift in (0.0, 0.5, 2.0):  # same covariance, means `shift` apart: FD = shift^2 exactly
        b = a.clone()
        b[:, 1] += shift
        assert evaluate.frechet_distance(Flatten(4), a, b) == pytest.approx(shift ** 2, abs=1e-6)


def test_encoder_distances_are_zero_for_identical_sets_and_grow_with_the_shift():
    torch.manual_seed(0)
    enc = evaluate.Encoder(16).eval().requires_grad_(False)  # a fixed random encoder is enough here
    imgs = blobs(200, 16, seed=0) // 2  # room to brighten without clipping
    assert evaluate.frechet_distance(enc, imgs, imgs.clone()) == pytest.approx(0, abs=1e-6)
    fds = [evaluate.frechet_distance(enc, imgs, imgs + s) for s in (8, 24, 64)]
    kids = [evaluate.kernel_distance(enc, imgs, imgs + s, seed=0, subsets=10)[0] for s in (0, 8, 24, 64)]
    assert 0 < fds[0] < fds[1] < fds[2], fds
    assert abs(kids[0]) < kids[1] < kids[2] < kids[3], kids


def test_knn_precision_recall_on_points_with_known_answers():
    real = torch.arange(10.0)[:, None]  # 0..9; the 3rd-neighbour radius is 3 at the ends, 2 inside
    pr = evaluate.knn_precision_recall
    assert pr(real, real.clone()) == (1.0, 1.0)
    # 4.5 lies in the ball of 4 (radius 2), the rest nowhere; the fakes' own balls are huge and cover all reals
    assert pr(real, torch.tensor([[4.5], [100.0], [200.0], [300.0]])) == (0.25, 1.0)
    # fakes 0..3 are all real points; their balls (radius 3, 2, 2, 3) cover reals 0..6
    assert pr(real, torch.arange(4.0)[:, None]) == (1.0, pytest.approx(0.7))
    assert pr(real, 1000 + torch.arange(10.0)[:, None]) == (0.0, 0.0)


def test_class_fidelity_counts_the_generators_class():
    predicted = torch.tensor([0, 0, 1, 0])  # class indices in dataset.CLASSES order: AD, NC
    assert evaluate.class_fidelity(predicted, "AD") == 0.75
    assert evaluate.class_fidelity(predicted, "NC") == 0.25


# ----------------------------------------------------------------------------- diversity and memorization

@pytest.mark.parametrize("res", [16, 32, 64])
def test_ms_ssim_is_one_for_copies_and_low_for_unrelated_images(res):
    s = evaluate.msssim_settings(res)
    assert res >> (len(s["betas"]) - 1) >= s["kernel_size"] and sum(s["betas"]) == pytest.approx(1, abs=1e-3)
    copies = blobs(1, res, seed=0).expand(20, -1, -1, -1)
    assert evaluate.ms_ssim_diversity(copies, seed=0, pairs=20) == pytest.approx(1.0, abs=1e-4)
    noise = torch.randint(0, 256, (20, 1, res, res), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert evaluate.ms_ssim_diversity(noise, seed=0, pairs=20) < 0.2


def test_memorization_audit_flags_a_planted_copy_and_not_new_images():
    train, test, fresh = blobs(100, 16, seed=1), blobs(100, 16, seed=2), blobs(30, 16, seed=3)
    bank = evaluate.pixels(evaluate.with_mirrors(train))
    clean = evaluate.memorization_audit(evaluate.pixels(fresh), evaluate.pixels(test), bank)
    assert clean.fraction <= 0.05  # new images of the same kind: ~1%, like held-out reals
    planted = torch.cat([fresh, train[7:8].flip(-1)])  # a mirrored copy of training image 7
    audit = evaluate.memorization_audit(evaluate.pixels(planted), evaluate.pixels(test), bank)
    assert audit.flagged[-1] and audit.distance[-1] == 0 and audit.index[-1] == 100 + 7  # its mirror in the bank
    assert audit.flagged[:-1].tolist() == clean.flagged.tolist()
    assert audit.threshold == pytest.approx(torch.quantile(audit.test_distance.double(), 0.01).item())


# ----------------------------------------------------------------------------- data splits

def test_subject_split_keeps_subjects_whole():
    subjects = [f"s{i // 5:03d}" for i in range(500)]  # 100 subjects, 5 slices each
    test = evaluate.subject_split(subjects)
    assert test.tolist() == evaluate.subject_split(list(subjects)).tolist()  # deterministic
    held = {s for s, t in zip(subjects, test.tolist()) if t}
    assert len(held) == 20 and not held & {s for s, t in zip(subjects, test.tolist()) if not t}
    assert evaluate.subject_split(["a", "a", "b"]).tolist() in ([True, True, False], [False, False, True])
    with pytest.raises(dataset.DataError):
        evaluate.subject_split(["a", "a"])


def _write_slices(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((12, 16), (10 * i) % 256, np.uint8)).save(folder / f"{name}.png")


def test_folder_splits_never_share_a_subject(tmp_path):
    _write_slices(tmp_path / "split" / "train" / "AD", ["100_0", "100_1", "200_0", "300_0"])
    _write_slices(tmp_path / "split" / "test" / "AD", ["400_0", "400_1"])
    clean = evaluate.load_split(str(tmp_path / "split"), "AD", 16, None, 0)
    assert (len(clean.train), len(clean.test), clean.notes) == (4, 2, [])
    _write_slices(tmp_path / "split" / "test" / "AD", ["100_5"])  # subject 100 now on both sides
    mixed = evaluate.load_split(str(tmp_path / "split"), "AD", 16, None, 0)
    assert "re-split by subject" in mixed.notes[0] and not set(mixed.train.subjects) & set(mixed.test.subjects)
    assert len(mixed.train) + len(mixed.test) == 7
    _write_slices(tmp_path / "flat" / "AD", [f"{s}_{k}" for s in range(10) for k in range(3)])
    flat = evaluate.load_split(str(tmp_path / "flat"), "AD", 16, None, 0)
    assert (len(set(flat.test.subjects)), len(flat.test)) == (2, 6) and "not held out" in flat.notes[0]
    assert not set(flat.train.subjects) & set(flat.test.subjects)


# ----------------------------------------------------------------------------- the encoder

def test_encoder_tells_demo_ad_from_nc_and_round_trips(tmp_path):
    splits = {c: evaluate.load_split("demo", c, 32, 200, 0) for c in evaluate.CLASSES}
    enc, report = evaluate.train_encoder({c: s.train.images for c, s in splits.items()},
                                         {c: s.test.images for c, s in splits.items()}, seed=0, steps=300)
    assert report["n_test"] == {"AD": 200, "NC": 200}
    assert report["test_accuracy"] >= 0.75, report  # chance is 0.5
    path = str(tmp_path / "encoder.pt")
    evaluate.save_encoder(enc, report, path)
    again, info = evaluate.load_encoder(path)
    assert info["test_accuracy"] == report["test_accuracy"] and again.num_features == enc.num_features
    x = splits["AD"].test.images[:8]
    torch.testing.assert_close(again(x), enc(x))
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    with pytest.raises(evaluate.modules.CheckpointError, match="not an encoder checkpoint"):
        evaluate.load_encoder(str(tmp_path / "foreign.pt"))


# ----------------------------------------------------------------------------- the script

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real 16x16 AD checkpoint from train.py (about 20 s), in the session's demo cache."""
    out = tmp_path_factory.mktemp("run") / "AD"
    subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--class", "AD", "--preset", "tiny",
                    "--demo-count", "48", "--out", str(out), "--device", "cpu"],
                   check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out / "checkpoint.pt"


def test_cli_end_to_end_on_a_tiny_checkpoint(tiny_run, tmp_path, capsys):
    args = ["--ckpt", str(tiny_run), "--n", "64", "--out", str(tmp_path / "eval"),
            "--encoder", str(tmp_path / "encoder.pt"), "--encoder-steps", "50"]
    evaluate.main(args)
    printed = capsys.readouterr().out
    assert "training the AD-vs-NC encoder (no encoder yet" in printed
    for row in ("SWD x1e3, 16px", "Frechet distance (encoder)", "KID (encoder)", "precision (k=3)", "recall (k=3)",
                "class fidelity (AD)", "MS-SSIM of random pairs", "nearer than 1% of test, pixels"):
        assert row in printed
    assert "Inception FID" in printed and "skipped" in printed
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["class"] == "AD" and report["resolution"] == 16 and report["seed"] == 0
    assert report["n_generated"] == 64 and report["n_compared"] == report["n_reference"] == 48  # 48 held-out reals
    assert report["images_seen"] > 0 and len(report["encoder"]["sha256"]) == 64
    assert 0 <= report["encoder"]["test_accuracy"] <= 1 and report["inception_fid"]["skipped"]
    for column in ("generated", "real_test"):
        m = report["metrics"][column]
        assert set(m) == {"swd_x1e3", "frechet_distance", "kid", "kid_std", "precision", "recall",
                          "class_fidelity", "ms_ssim", "nn_distance_features_median", "nn_distance_pixels_median",
                          "memorized_fraction_features", "memorized_fraction_pixels",
                          "memorization_threshold_features", "memorization_threshold_pixels"}
        assert set(m["swd_x1e3"]) == {"16", "mean"} and all(np.isfinite(v) for v in m["swd_x1e3"].values())
    with Image.open(tmp_path / "eval" / "memorization_pairs.png") as png:
        assert png.size == (1 + 12 * 17, 1 + 2 * 17)  # 12 generated images over their nearest training slices

    evaluate.main(args)  # again: the cached encoder, the same numbers, and a note about overwriting
    printed = capsys.readouterr().out
    assert "training the AD-vs-NC encoder" not in printed and "will be overwritten" in printed
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["metrics"] == report["metrics"] and again["encoder"]["sha256"] == report["encoder"]["sha256"]


def _exit_code_and_error(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        evaluate.main(argv)
    return e.value.code, capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_code_2(tiny_run, tmp_path, capsys):
    code, err = _exit_code_and_error(["--ckpt", str(tmp_path / "nope.pt")], capsys)
    assert code == 2 and err.count("\n") == 1 and str(tmp_path / "nope.pt") in err
    code, err = _exit_code_and_error(["--ckpt", str(tiny_run), "--inception-weights", str(tmp_path / "w.pth")],
                                     capsys)
    assert code == 2 and err.count("\n") == 1 and "--inception-weights" in err and str(tmp_path / "w.pth") in err
    code, err = _exit_code_and_error([], capsys)
    assert code == 2 and "--ckpt" in err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, err = _exit_code_and_error(["--ckpt", str(tmp_path / "junk.pt")], capsys)
    assert code == 2 and err.count("\n") == 1 and "junk.pt" in err


def test_inception_fid_says_why_it_is_skipped(tmp_path):
    imgs = blobs(4, 16, seed=0)
    reason = evaluate.inception_metric(None, "cpu")
    assert "--inception-weights" in reason
    assert evaluate.inception_fid(reason, imgs, {"generated": imgs}, "cpu") == {"skipped": reason}
    if evaluate.torch_fidelity_available():
        pytest.skip("torch-fidelity is installed here; the skip path is for machines without it")
    (tmp_path / "w.pth").write_bytes(b"")
    assert "pip install torch-fidelity" in evaluate.inception_metric(str(tmp_path / "w.pth"), "cpu")


# ----------------------------------------------------------------------------- two classes, and images from elsewhere

@pytest.fixture(scope="module")
def nc_twin(tiny_run, tmp_path_factory):
    """The tiny AD checkpoint relabelled NC: the same generator, so the generated classes cannot differ."""
    state = torch.load(tiny_run, weights_only=True)
    state["class_name"] = state["train_config"]["class_name"] = "NC"
    path = tmp_path_factory.mktemp("run") / "NC" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def shared_encoder(tmp_path_factory):
    """One encoder file for these tests: the first trains it (a few seconds at 16x16), the others load it."""
    return str(tmp_path_factory.mktemp("encoder") / "encoder.pt")


BIOMARKER_KEYS = {"generated", "real_train", "real_test", "wasserstein", "wasserstein_floor", "relative_error"}


def real_biomarkers(class_name: str, res: int = 16, demo_count: int = 48) -> dict:
    train = evaluate.load_split("demo", class_name, res, demo_count, 0).train.images
    return {"csf_fraction": dataset.csf_fraction(train).double(),
            "ventricle_fraction": dataset.ventricle_fraction(train).double()}


def test_two_checkpoints_compare_the_classes(tiny_run, nc_twin, shared_encoder, tmp_path, capsys):
    out = tmp_path / "eval"
    evaluate.main(["--ckpt", str(nc_twin), str(tiny_run), "--n", "32", "--out", str(out),  # NC first: any order
                   "--encoder", shared_encoder, "--encoder-steps", "30"])
    printed = capsys.readouterr().out
    assert printed.count("training the AD-vs-NC encoder") <= 1  # one encoder for both classes
    reports = {c: json.loads((out / c / "metrics.json").read_text()) for c in ("AD", "NC")}
    assert (out / "AD" / "memorization_pairs.png").is_file() and (out / "NC" / "memorization_pairs.png").is_file()
    assert reports["AD"]["class"] == "AD" and reports["NC"]["class"] == "NC" and reports["NC"]["images"] is None
    assert reports["AD"]["encoder"]["sha256"] == reports["NC"]["encoder"]["sha256"]
    diff = json.loads((out / "class_difference.json").read_text())
    assert set(diff) == {"csf_fraction", "ventricle_fraction", "class_fidelity"}
    fidelity = {c: reports[c]["metrics"]["generated"]["class_fidelity"] for c in ("AD", "NC")}
    assert diff["class_fidelity"] == {**fidelity, "mean": pytest.approx((fidelity["AD"] + fidelity["NC"]) / 2)}
    assert fidelity["AD"] + fidelity["NC"] == pytest.approx(1)  # the same images, classified once
    real = {c: real_biomarkers(c) for c in ("AD", "NC")}
    for name in ("csf_fraction", "ventricle_fraction"):
        d = diff[name]
        assert set(d) == {"generated", "real", "reproduced", "ratio"}
        assert set(d["generated"]) == set(d["real"]) == {"difference", "ci95", "cohens_d"}
        for c in ("AD", "NC"):
            b = reports[c]["biomarkers"][name]
            assert set(b) == BIOMARKER_KEYS and set(b["generated"]) == {"mean", "sd"}
            assert b["real_train"]["mean"] == pytest.approx(real[c][name].mean().item())
        # the real difference is that of the two classes' real training slices, computed here independently
        assert d["real"]["difference"] == pytest.approx((real["AD"][name].mean() - real["NC"][name].mean()).item())
        assert d["real"]["ci95"][0] < d["real"]["difference"] < d["real"]["ci95"][1]
        # one generator under two labels: no generated difference, so nothing reproduced
        assert d["generated"]["difference"] == 0 and d["generated"]["cohens_d"] == 0
        assert d["generated"]["ci95"][0] <= 0 <= d["generated"]["ci95"][1]
        assert d["ratio"] == 0 and d["reproduced"] is False
        assert f"{name}: generated AD-NC +0.000" in printed
    assert printed.rstrip().splitlines()[-1] == \
        "The generators do not reproduce the real AD-NC difference in any biomarker."


def demo_slices_as_pngs(folder, n: int = 20, res: int = 16):
    """Held-out real AD demo slices written as PNGs (a 'generator' as good as the data); one saved as RGB."""
    folder.mkdir()
    images = evaluate.load_split("demo", "AD", res, 48, 0).test.images[:n]
    for i, img in enumerate(images[:, 0].numpy()):
        Image.fromarray(img).convert("RGB" if i == 0 else "L").save(folder / f"slice_{i:03d}.png")
    return images


def test_images_from_a_folder_and_from_a_tensor_file(shared_encoder, tmp_path, capsys):
    images = demo_slices_as_pngs(tmp_path / "pngs")
    torch.save(images[:, 0].clone(), tmp_path / "images.pt")  # (N, R, R)
    common = ["--class", "AD", "--demo-count", "48", "--encoder", shared_encoder, "--encoder-steps", "30"]
    for source, out in ((tmp_path / "pngs", tmp_path / "eval_pngs"), (tmp_path / "images.pt", tmp_path / "eval_pt")):
        evaluate.main(["--images", str(source), "--out", str(out), *common])
        assert "AD images" in capsys.readouterr().out
        report = json.loads((out / "metrics.json").read_text())
        assert report["checkpoint"] is None and report["images"] == str(source.resolve())
        assert (report["class"], report["resolution"], report["n_generated"], report["data"]) == ("AD", 16, 20, "demo")
        assert report["images_seen"] is None and report["data_seed"] == 0 and report["demo_count"] == 48
        assert set(report["biomarkers"]) == {"csf_fraction", "ventricle_fraction"}
        csf = report["biomarkers"]["csf_fraction"]
        assert csf["generated"]["mean"] == pytest.approx(dataset.csf_fraction(images).double().mean().item())
        assert (out / "memorization_pairs.png").is_file()
    assert json.loads((tmp_path / "eval_pngs" / "metrics.json").read_text())["metrics"] == report["metrics"]


def _one_line_refusal(argv, capsys, *needles):
    code, err = _exit_code_and_error(argv, capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_refusals_of_the_new_modes(tiny_run, tmp_path, capsys):
    ckpt = str(tiny_run)
    _one_line_refusal(["--ckpt", ckpt, ckpt, ckpt], capsys, "3 checkpoints", "one AD and one NC")
    _one_line_refusal(["--ckpt", ckpt, ckpt, "--n", "16"], capsys, "both AD", "one AD and one NC")
    folder = tmp_path / "pngs"
    folder.mkdir()
    _one_line_refusal(["--images", str(folder)], capsys, "--class")
    _one_line_refusal(["--images", str(folder), "--class", "XY"], capsys, "--class XY", "AD")
    _one_line_refusal(["--images", str(folder), "--ckpt", ckpt, "--class", "AD"], capsys, "--ckpt or --images")
    _one_line_refusal(["--ckpt", ckpt, "--class", "AD"], capsys, "--class applies to --images")
    _one_line_refusal(["--images", str(tmp_path / "missing"), "--class", "AD"], capsys, str(tmp_path / "missing"))
    _one_line_refusal(["--images", str(folder), "--class", "AD"], capsys, str(folder), "no .png")
    for i in range(3):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / f"a{i}.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "b.png")
    _one_line_refusal(["--images", str(folder), "--class", "AD"], capsys, str(folder / "b.png"), "one size")
    (folder / "b.png").unlink()
    Image.fromarray(np.zeros((32, 16), np.uint8)).save(folder / "c.png")
    _one_line_refusal(["--images", str(folder), "--class", "AD"], capsys, str(folder / "c.png"), "not square")
    (folder / "c.png").unlink()
    (folder / "d.jpeg").write_bytes(b"not a JPEG")
    _one_line_refusal(["--images", str(folder), "--class", "AD"], capsys, str(folder / "d.jpeg"), "not a readable")
    (folder / "d.jpeg").unlink()
    _one_line_refusal(["--images", str(folder), "--class", "AD"], capsys, str(folder), "3 images, too few")
    bad = {"float.pt": torch.rand(20, 1, 16, 16), "rgb.pt": torch.zeros(20, 3, 16, 16, dtype=torch.uint8),
           "odd.pt": torch.zeros(20, 1, 24, 24, dtype=torch.uint8), "dict.pt": {"images": torch.zeros(2)}}
    for name, value in bad.items():
        torch.save(value, tmp_path / name)
    _one_line_refusal(["--images", str(tmp_path / "float.pt"), "--class", "NC"], capsys, "float.pt", "uint8")
    _one_line_refusal(["--images", str(tmp_path / "rgb.pt"), "--class", "NC"], capsys, "rgb.pt", "(N, 1, R, R)")
    _one_line_refusal(["--images", str(tmp_path / "odd.pt"), "--class", "NC"], capsys, "odd.pt", "power of two")
    _one_line_refusal(["--images", str(tmp_path / "dict.pt"), "--class", "NC"], capsys, "dict.pt", "not a tensor")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    _one_line_refusal(["--images", str(tmp_path / "junk.pt"), "--class", "NC"], capsys, "junk.pt", "torch.save")
