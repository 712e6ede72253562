"""evaluate.py and what it is built from: the subject split and the candidates (evaldata.py), the encoder
(encoder.py), and the command line on a real tiny run. The metrics themselves: test_metrics.py."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import core
import dataset
import encoder
import evaldata
import evaluate
import metrics
import modules
import sampling
from conftest import PARENT, ROOT, blobs, one_line_error


def test_evaluate_still_exports_the_names_that_moved():
    """evaluate.X stays importable for every X that moved to the modules it is built from."""
    for module, names in ((metrics, ["swd", "frechet_distance", "knn_precision_recall", "memorization_audit",
                                     "pixels", "with_mirrors", "class_fidelity", "class_difference", "metrics_of"]),
                          (encoder, ["Encoder", "train_encoder", "save_encoder", "load_encoder", "get_encoder",
                                     "inception_metric", "inception_fid", "torch_fidelity_available"]),
                          (evaldata, ["subject_split", "load_split", "data_key", "Split", "Candidate",
                                      "read_image_folder", "read_image_tensor"]),
                          (dataset, ["BIOMARKERS", "biomarker_values"])):
        for name in names:
            assert getattr(evaluate, name) is getattr(module, name), name
    assert evaluate.InputError is core.UserError and issubclass(dataset.DataError, core.UserError)
    assert evaluate.generate.__module__ == "sampling" and evaluate.write_json is core.write_json_atomic


# ----------------------------------------------------------------------------- data splits

def test_subject_split_keeps_subjects_whole():
    subjects = [f"s{i // 5:03d}" for i in range(500)]  # 100 subjects, 5 slices each
    test = evaldata.subject_split(subjects)
    assert test.tolist() == evaldata.subject_split(list(subjects)).tolist()  # deterministic
    held = {s for s, t in zip(subjects, test.tolist()) if t}
    assert len(held) == 20 and not held & {s for s, t in zip(subjects, test.tolist()) if not t}
    assert evaldata.subject_split(["a", "a", "b"]).tolist() in ([True, True, False], [False, False, True])
    with pytest.raises(dataset.DataError):
        evaldata.subject_split(["a", "a"])


def _write_slices(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((12, 16), (10 * i) % 256, np.uint8)).save(folder / f"{name}.png")


def test_folder_splits_never_share_a_subject(tmp_path):
    _write_slices(tmp_path / "split" / "train" / "AD", ["100_0", "100_1", "200_0", "300_0"])
    _write_slices(tmp_path / "split" / "test" / "AD", ["400_0", "400_1"])
    clean = evaldata.load_split(str(tmp_path / "split"), "AD", 16, None, 0)
    assert (len(clean.train), len(clean.test), clean.notes) == (4, 2, [])
    _write_slices(tmp_path / "split" / "test" / "AD", ["100_5"])  # subject 100 now on both sides
    mixed = evaldata.load_split(str(tmp_path / "split"), "AD", 16, None, 0)
    assert "re-split by subject" in mixed.notes[0] and not set(mixed.train.subjects) & set(mixed.test.subjects)
    assert len(mixed.train) + len(mixed.test) == 7
    _write_slices(tmp_path / "flat" / "AD", [f"{s}_{k}" for s in range(10) for k in range(3)])
    flat = evaldata.load_split(str(tmp_path / "flat"), "AD", 16, None, 0)
    assert (len(set(flat.test.subjects)), len(flat.test)) == (2, 6) and "not held out" in flat.notes[0]
    assert not set(flat.train.subjects) & set(flat.test.subjects)


# ----------------------------------------------------------------------------- the encoder

@pytest.mark.slow
def test_encoder_tells_demo_ad_from_nc_and_round_trips(tmp_path):
    splits = {c: evaldata.load_split("demo", c, 32, 200, 0) for c in core.CLASSES}
    enc, report = encoder.train_encoder({c: s.train.images for c, s in splits.items()},
                                        {c: s.test.images for c, s in splits.items()}, seed=0, steps=300)
    assert report["n_test"] == {"AD": 200, "NC": 200}
    assert report["test_accuracy"] >= 0.75, report  # chance is 0.5
    # held-out slices blurred by 0.5 px: still told apart (an encoder keyed to sharpness calls them all one class)
    assert report["blurred_sigma"] == 0.5 and min(report["blurred_class_accuracy"].values()) >= 0.6, report
    path = str(tmp_path / "encoder.pt")
    encoder.save_encoder(enc, report, path)
    again, info = encoder.load_encoder(path)
    assert info["test_accuracy"] == report["test_accuracy"] and again.num_features == enc.num_features
    x = splits["AD"].test.images[:8]
    torch.testing.assert_close(again(x), enc(x))
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    with pytest.raises(evaluate.modules.CheckpointError, match="not an encoder checkpoint"):
        encoder.load_encoder(str(tmp_path / "foreign.pt"))


def test_augment_shifts_by_whole_pixels_with_black_fill_and_scales_contrast():
    x = torch.full((64, 1, 16, 16), 0.5)
    out = encoder.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    inside = out[out > -1]  # the black fill of a shift is -1 exactly; the rest is 0.5 scaled by 0.9-1.1
    assert ((inside + 1) / 1.5).min() >= 0.9 - 1e-6 and ((inside + 1) / 1.5).max() <= 1.1 + 1e-6
    rows_black = (out == -1).all(dim=-1).sum(dim=(1, 2))  # whole black rows: the vertical shift, at most 16/16 = 1
    assert rows_black.max() == 1 and rows_black.min() == 0


def test_gaussian_blur_matches_a_hand_computed_kernel_and_keeps_sigma_zero_images():
    x = torch.zeros(3, 1, 15, 15)
    x[:, 0, 7, 7] = 1.0  # a point in the middle: its blur is the kernel itself
    out = encoder.gaussian_blur(x, torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(out[0], x[0])  # sigma 0: unchanged
    for i, s in ((1, 0.5), (2, 1.0)):
        w = [math.exp(-0.5 * (d / s) ** 2) for d in range(-3, 4)]  # the kernel is cut at 3 sigma of the largest
        w = torch.tensor([v / sum(w) for v in w])
        expected = torch.zeros(15, 15)
        expected[4:11, 4:11] = w[:, None] * w[None, :]
        torch.testing.assert_close(out[i, 0], expected)
    flat = torch.full((2, 1, 16, 16), 77, dtype=torch.uint8)  # mirrored borders: a flat image stays flat
    assert torch.equal(encoder.blurred_uint8(flat, 1.0), flat)
    assert encoder.blur_sigma(32) == 1.0 and encoder.blur_sigma(256) == 4.0


# ----------------------------------------------------------------------------- the script

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real 16x16 AD checkpoint from train.py (about 20 s), in the session's demo cache."""
    out = tmp_path_factory.mktemp("run") / "AD"
    subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--class", "AD", "--preset", "tiny",
                    "--demo-count", "48", "--out", str(out), "--device", "cpu"],
                   check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out / "checkpoint.pt"


@pytest.mark.slow
def test_cli_end_to_end_on_a_tiny_checkpoint(tiny_run, tmp_path, capsys):
    # on the CPU, where this test recomputes the noise share: on a GPU the noise is drawn from its own generator
    args = ["--ckpt", str(tiny_run), "--n", "64", "--out", str(tmp_path / "eval"),
            "--encoder", str(tmp_path / "encoder.pt"), "--encoder-steps", "50", "--device", "cpu"]
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
    assert report["images_seen"] == torch.load(tiny_run, weights_only=True)["images_seen"]
    assert report["encoder"]["sha256"] == core.file_sha256(str(tmp_path / "encoder.pt"))
    assert report["inception_fid"]["skipped"]
    share = report["noise_share"]  # the generator's own, recomputed here
    assert set(share["by_resolution"]) == {"4", "8", "16"} and (share["n_w"], share["draws"]) == (64, 4)
    assert share["total"] == pytest.approx(sampling.noise_share(modules.load_generator(str(tiny_run)))["total"])
    assert "variety carried by the noise inputs at fixed w" in printed
    enc, _ = encoder.load_encoder(str(tmp_path / "encoder.pt"))  # its held-out accuracy, recomputed here
    for i, c in enumerate(core.CLASSES):
        held_out = evaldata.load_split("demo", c, 16, 48, 0).test.images
        accuracy = encoder.encoder_outputs(enc, held_out)[1].eq(i).float().mean().item()
        assert report["encoder"]["class_accuracy"][c] == pytest.approx(accuracy)
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


def refusal(argv, capsys, *needles) -> str:
    """evaluate.main(argv) refuses in one line naming every needle."""
    err = one_line_error(evaluate.main, argv, capsys)
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    refusal(["--ckpt", str(tmp_path / "nope.pt")], capsys, str(tmp_path / "nope.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    refusal(["--ckpt", str(tmp_path / "junk.pt"), "--inception-weights", str(tmp_path / "w.pth")], capsys,
            "--inception-weights", str(tmp_path / "w.pth"))
    refusal([], capsys, "--ckpt")
    refusal(["--ckpt", str(tmp_path / "junk.pt")], capsys, "junk.pt")
    refusal(["--ckpt", str(tmp_path / "junk.pt"), "--device", "tpu:x"], capsys, "--device tpu:x")
    refusal(["--train-encoder", "--encoder-steps", "5"], capsys, "--encoder-steps 5", "10 or more")  # crashed before


def test_inception_fid_says_why_it_is_skipped(tmp_path):
    imgs = blobs(4, 16, seed=0)
    reason = encoder.inception_metric(None, "cpu")
    assert "--inception-weights" in reason
    assert encoder.inception_fid(reason, imgs, {"generated": imgs}, "cpu") == {"skipped": reason}
    if encoder.torch_fidelity_available():
        pytest.skip("torch-fidelity is installed here; the skip path is for machines without it")
    (tmp_path / "w.pth").write_bytes(b"")
    assert "pip install torch-fidelity" in encoder.inception_metric(str(tmp_path / "w.pth"), "cpu")


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


BIOMARKER_KEYS = {"generated", "real_train", "real_test", "wasserstein", "wasserstein_floor", "relative_error",
                  "quantiles", "by_dark"}


def real_biomarkers(class_name: str, res: int = 16, demo_count: int = 48) -> dict:
    train = evaldata.load_split("demo", class_name, res, demo_count, 0).train.images
    return {"csf_fraction": dataset.csf_fraction(train).double(),
            "ventricle_fraction": dataset.ventricle_fraction(train).double()}


def real_at(class_name: str, name: str, dark: float, res: int = 16, demo_count: int = 48) -> float:
    train = evaldata.load_split("demo", class_name, res, demo_count, 0).train.images
    return dataset.BIOMARKERS[name](train, dark).double().mean().item()


@pytest.mark.slow
def test_two_checkpoints_compare_the_classes(tiny_run, nc_twin, shared_encoder, tmp_path, capsys):
    refusal(["--ckpt", str(tiny_run), str(tiny_run), "--n", "16"], capsys, "both AD", "one AD and one NC")
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
            # the median of the training slices, recomputed here (torch.quantile interpolates as numpy does)
            assert b["quantiles"]["real_train"][2] == pytest.approx(real[c][name].double().quantile(0.5).item())
            assert b["real_train"]["mean"] == pytest.approx(real[c][name].mean().item())
            # at the biomarkers' own cut the profile repeats the means; the training slices' recomputed at 0.3
            by = b["by_dark"]
            assert by["at"] == list(dataset.DARK_LEVELS) and by["at"][1] == 0.45
            assert by["generated"][1] == pytest.approx(b["generated"]["mean"])
            assert by["real_train"][1] == pytest.approx(b["real_train"]["mean"])
            assert by["real_train"][0] == pytest.approx(real_at(c, name, 0.3))
            assert by["real_train"][0] <= by["real_train"][1] <= by["real_train"][2]  # a looser cut counts more
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


@pytest.mark.slow
def test_children_of_one_parent_are_compared_as_partners(siblings, shared_encoder, tmp_path, capsys):
    out = tmp_path / "eval"
    evaluate.main(["--ckpt", siblings["AD"], siblings["NC"], "--n", "32", "--seed", "3", "--out", str(out),
                   "--encoder", shared_encoder, "--encoder-steps", "30", "--device", "cpu"])  # as the partners below
    printed = capsys.readouterr().out
    diff = json.loads((out / "class_difference.json").read_text())
    assert set(diff) == {"csf_fraction", "ventricle_fraction", "class_fidelity", "pairs"}
    p = diff["pairs"]
    assert set(p) == {"parent_sha256", "partners", "n_pairs", "fraction_ad_more_csf", "csf_fraction",
                      "ventricle_fraction", "ssim_pairs", "ssim_random", "ssim_gain", "partners_more_alike"}
    assert p["parent_sha256"] == PARENT["sha256"] and p["n_pairs"] == 32 and "seed 3 + k" in p["partners"]
    # the partners again, made here: image k of each child from seed 3 + k, the same z and the same noise
    images = {c: sampling.generate(modules.load_generator(siblings[c]), 32, 3) for c in core.CLASSES}
    for name, f in dataset.BIOMARKERS.items():
        ad, nc = (f(images[c]).double().numpy() for c in core.CLASSES)
        assert p[name]["mean_paired_difference"] == pytest.approx((ad - nc).mean(), abs=1e-12)
        assert p[name]["ci95"][0] <= p[name]["mean_paired_difference"] <= p[name]["ci95"][1]
        assert p[name]["real_difference"] == diff[name]["real"]["difference"]
        if name == "csf_fraction":
            assert p["fraction_ad_more_csf"] == pytest.approx(np.mean(ad > nc))
    assert p["ssim_pairs"] == pytest.approx(metrics.ssim_per_pair(images["AD"], images["NC"]).double().mean().item())
    assert p["ssim_pairs"] > 0.9 > p["ssim_random"] and p["partners_more_alike"] is True  # nearly twins
    assert f"The AD partner has more CSF than its NC partner in {p['fraction_ad_more_csf']:.0%} of seeds." in printed
    assert printed.rstrip().splitlines()[-1].endswith("partners are clearly more alike than random pairs.")


def demo_slices_as_pngs(folder, n: int = 20, res: int = 16):
    """Held-out real AD demo slices written as PNGs (a 'generator' as good as the data); one saved as RGB."""
    folder.mkdir()
    images = evaldata.load_split("demo", "AD", res, 48, 0).test.images[:n]
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
        assert report["noise_share"] is None  # images made elsewhere: no generator to ask
        assert set(report["biomarkers"]) == {"csf_fraction", "ventricle_fraction"}
        csf = report["biomarkers"]["csf_fraction"]
        assert csf["generated"]["mean"] == pytest.approx(dataset.csf_fraction(images).double().mean().item())
        assert (out / "memorization_pairs.png").is_file()
    assert json.loads((tmp_path / "eval_pngs" / "metrics.json").read_text())["metrics"] == report["metrics"]


def test_refusals_of_the_new_modes(tmp_path, capsys):
    ckpt = str(tmp_path / "checkpoint.pt")  # these refusals come before a checkpoint is read
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    refusal(["--ckpt", ckpt, ckpt, ckpt], capsys, "3 checkpoints", "one AD and one NC")
    folder = tmp_path / "pngs"
    folder.mkdir()
    refusal(["--images", str(folder)], capsys, "--class")
    refusal(["--images", str(folder), "--class", "XY"], capsys, "--class XY", "AD")
    refusal(["--images", str(folder), "--ckpt", ckpt, "--class", "AD"], capsys, "--ckpt or --images")
    refusal(["--ckpt", ckpt, "--class", "AD"], capsys, "--class applies to --images")
    refusal(["--images", str(tmp_path / "missing"), "--class", "AD"], capsys, str(tmp_path / "missing"))
    refusal(["--images", str(folder), "--class", "AD"], capsys, str(folder), "no .png")
    for i in range(3):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / f"a{i}.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "b.png")
    refusal(["--images", str(folder), "--class", "AD"], capsys, str(folder / "b.png"), "one size")
    (folder / "b.png").unlink()
    Image.fromarray(np.zeros((32, 16), np.uint8)).save(folder / "c.png")
    refusal(["--images", str(folder), "--class", "AD"], capsys, str(folder / "c.png"), "not square")
    (folder / "c.png").unlink()
    (folder / "d.jpeg").write_bytes(b"not a JPEG")
    refusal(["--images", str(folder), "--class", "AD"], capsys, str(folder / "d.jpeg"), "not a readable")
    (folder / "d.jpeg").unlink()
    refusal(["--images", str(folder), "--class", "AD"], capsys, str(folder), "3 images, too few")
    bad = {"float.pt": torch.rand(20, 1, 16, 16), "rgb.pt": torch.zeros(20, 3, 16, 16, dtype=torch.uint8),
           "odd.pt": torch.zeros(20, 1, 24, 24, dtype=torch.uint8), "dict.pt": {"images": torch.zeros(2)}}
    for name, value in bad.items():
        torch.save(value, tmp_path / name)
    refusal(["--images", str(tmp_path / "float.pt"), "--class", "NC"], capsys, "float.pt", "uint8")
    refusal(["--images", str(tmp_path / "rgb.pt"), "--class", "NC"], capsys, "rgb.pt", "(N, 1, R, R)")
    refusal(["--images", str(tmp_path / "odd.pt"), "--class", "NC"], capsys, "odd.pt", "power of two")
    refusal(["--images", str(tmp_path / "dict.pt"), "--class", "NC"], capsys, "dict.pt", "not a tensor")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    refusal(["--images", str(tmp_path / "junk.pt"), "--class", "NC"], capsys, "junk.pt", "torch.save")
