"""Tests for dataset.py on folders built here (ADNI layout, NIfTI) and on small demo sets; CPU, well under a minute."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import dataset as D
from conftest import ROOT

REPO = Path(ROOT)


def brain_image(path: Path, size=(256, 240), mode="L"):
    """A bright ellipse with a dark 'ventricle' and a marker on its left side, saved by extension."""
    img = Image.new("L", size, 0)
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.ellipse((w * 0.15, h * 0.1, w * 0.85, h * 0.9), fill=200)
    draw.ellipse((w * 0.45, h * 0.4, w * 0.55, h * 0.6), fill=40)
    draw.rectangle((w * 0.2, h * 0.45, w * 0.3, h * 0.55), fill=255)
    img.convert(mode).save(path)


@pytest.fixture
def adni(tmp_path) -> Path:
    """ROOT/{train,test}/{AD,NC}: 4 + 3 + 2 + 2 good images, one corrupt JPEG, and ignored text and hidden files."""
    root = tmp_path / "ADNI"
    layout = {("train", "AD"): ["S001_1.jpeg", "S001_2.jpeg", "S002_1.jpeg", "S003_1.png"],
              ("train", "NC"): ["N001_1.jpeg", "N001_2.jpg", "N002_1.jpeg"],
              ("test", "AD"): ["T001_1.jpeg", "T001_2.jpeg"],
              ("test", "NC"): ["U001_1.jpeg", "U002_1.jpeg"]}
    for (split, cls), names in layout.items():
        folder = root / split / cls
        folder.mkdir(parents=True)
        for name in names:
            brain_image(folder / name, mode="RGB" if name.endswith(".png") else "L")
    (root / "test" / "NC" / "U003_1.jpeg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (root / "test" / "NC" / "notes.txt").write_text("ignored")
    (root / "train" / "AD" / "._S001_1.jpeg").write_bytes(b"macOS metadata, ignored")
    return root


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_volume(path: Path, data: np.ndarray, affine=None):
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4) if affine is None else affine), path)


def box_volume() -> np.ndarray:
    """(32, 40, 40) LAS volume: a box over z 10..29, brighter in its anterior half and at the subject's left."""
    vol = np.zeros((32, 40, 40), np.float32)
    vol[6:26, 6:34, 10:30] = 100.0
    vol[6:26, 20:34, 10:30] = 200.0  # anterior (high y)
    vol[22:26, 6:20, 10:30] = 300.0  # high array x = subject's left when the x axis points left (LAS)
    return vol


LAS = np.diag([-1.0, 1.0, 1.0, 1.0])


# ---------------------------------------------------------------- folders

def test_adni_counts_per_class_and_split(adni):
    expected = {("train", "AD"): 4, ("train", "NC"): 3, ("test", "AD"): 2}
    for (split, cls), n in expected.items():
        s = D.load_slices(str(adni), cls, split, 64)
        assert (len(s), s.class_name, s.split) == (n, cls, split)
        assert s.images.dtype == torch.uint8 and s.images.shape == (n, 1, 64, 64)
    s = D.load_slices(str(adni), "AD", "train", 64)
    assert s.subjects == ["S001", "S001", "S002", "S003"]
    assert str(adni / "train" / "AD") in s.source
    s = D.load_slices(str(adni), "NC", "test", 64, skip_bad=True)
    assert len(s) == 2 and s.skipped == 1 and "1 unreadable files skipped" in s.source


def test_flat_layout_ignores_split(tmp_path):
    for name in ("A_1.jpeg", "A_2.jpeg"):
        (tmp_path / "AD").mkdir(exist_ok=True)
        brain_image(tmp_path / "AD" / name)
    s = D.load_slices(str(tmp_path), "AD", "test", 32)
    assert len(s) == 2 and "--split is ignored" in s.source


def test_non_square_is_padded_not_stretched(tmp_path):
    (tmp_path / "AD").mkdir()
    Image.new("L", (256, 240), 255).save(tmp_path / "AD" / "W_1.png")
    img = D.load_slices(str(tmp_path), "AD", resolution=256).images[0, 0]
    assert (img[:8] == 0).all() and (img[-8:] == 0).all() and (img[8:-8] == 255).all()


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    (tmp_path / "NC").mkdir()
    ramp = np.tile(np.linspace(0, 4000, 32).astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "NC" / "R_1.png")
    img = D.load_slices(str(tmp_path), "NC", resolution=32).images[0, 0]
    assert img[0, 0] == 0 and img[0, -1] == 255 and 120 < img[0, 16] < 136


def test_nifti_band_orientation_and_4d(tmp_path):
    (tmp_path / "AD").mkdir()
    write_volume(tmp_path / "AD" / "subj1.nii.gz", box_volume(), LAS)
    write_volume(tmp_path / "AD" / "subj2.nii", box_volume()[..., None], LAS)  # 4D with one frame is accepted
    s = D.load_slices(str(tmp_path), "AD", resolution=64, band=(0.4, 0.6))
    # extent z 10..29: band 17.6..21.4 -> slices 18, 19, 20, 21 of each volume
    assert len(s) == 8 and s.subjects == ["subj1"] * 4 + ["subj2"] * 4
    img = s.images[0, 0].float()
    assert img.max() == 255 and img[0, 0] == 0
    right = img[:, 32:]  # away from the marker
    assert right[:32][right[:32] > 0].mean() > 1.5 * right[32:][right[32:] > 0].mean()  # anterior is up
    assert img[:, :32].max() == 255 and right.max() < 255  # the subject's left is on the image's left


# ---------------------------------------------------------------- resolutions and batches

def test_shapes_at_each_resolution(adni):
    s = D.load_slices(str(adni), "AD", "train", 64)
    for res in (64, 32, 16, 8, 4):
        x = s.at_resolution(res)
        assert x.shape == (4, 1, res, res) and x.dtype == torch.uint8
    assert s.at_resolution(16) is s.at_resolution(16)  # cached
    expected = torch.nn.functional.avg_pool2d(s.images.float(), 4).round().to(torch.uint8)
    assert torch.equal(s.at_resolution(16), expected)
    for bad in (48, 128, 0):
        with pytest.raises(ValueError):
            s.at_resolution(bad)


def test_prepare_batch_range_dtype_and_flip_fraction():
    x = torch.zeros(2000, 1, 8, 8, dtype=torch.uint8)
    x[..., :4] = 255  # bright left half
    out = D.prepare_batch(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.min() == -1 and out.max() == 1
    flipped = (out[:, 0, 0, 0] == -1).float().mean().item()
    assert 0.46 < flipped < 0.54
    assert torch.equal(out, D.prepare_batch(x, torch.Generator().manual_seed(0)))
    assert torch.equal(D.prepare_batch(x, flip=False)[:, 0, 0, 0], torch.ones(2000))


def test_prepare_batch_matches_design_transform(tmp_path):
    (tmp_path / "NC").mkdir()
    brain_image(tmp_path / "NC" / "D_1.png")
    pil = Image.open(tmp_path / "NC" / "D_1.png")
    x = D.load_slices(str(tmp_path), "NC", resolution=32).images
    mine = D.prepare_batch(x, flip=False)[0]
    for seed in range(6):  # the design's random flip must give either the plain or the mirrored image
        torch.manual_seed(seed)
        ref = D.design_transform(32)(pil)
        assert ref.shape == mine.shape and ref.dtype == mine.dtype
        err = min((ref - mine).abs().max(), (ref - mine.flip(-1)).abs().max())
        assert err < 1.5 / 127.5


# ---------------------------------------------------------------- demo set

def test_demo_counts_determinism_and_cache(tmp_path):
    a = D.load_slices(None, "AD", "train", 32, demo_count=20, cache_dir=str(tmp_path / "c1"))
    assert len(a) == 20 and a.images.shape == (20, 1, 32, 32) and a.subjects[0] == "demo-train-AD-0000"
    assert len(list((tmp_path / "c1").glob("*.pt"))) == 1 and not list((tmp_path / "c1").glob("*.tmp"))
    fresh = D.load_slices("demo", "AD", "train", 32, demo_count=20, cache_dir=str(tmp_path / "c2"))
    assert torch.equal(a.images, fresh.images)  # rebuilt, not read from the same cache
    cached = D.load_slices("demo", "AD", "train", 32, demo_count=20, cache_dir=str(tmp_path / "c1"))
    assert torch.equal(a.images, cached.images)
    other_seed = D.load_slices("demo", "AD", "train", 32, demo_count=20, seed=1, cache_dir=str(tmp_path / "c1"))
    test = D.load_slices("demo", "AD", "test", 32, demo_count=20, cache_dir=str(tmp_path / "c1"))
    assert not torch.equal(a.images, other_seed.images)
    assert not any(torch.equal(t, x) for t in test.images for x in a.images)  # splits share no samples
    assert len({bytes(x.numpy()) for x in a.images}) == 20  # no two samples identical


def test_export_round_trip_and_refusal(tmp_path, capsys):
    out = tmp_path / "export"
    assert D.main(["--export", str(out), "--count", "12"]) == 0
    files = sorted(out.rglob("*.jpeg"))
    assert len(files) == 48
    with Image.open(files[0]) as img:
        assert (img.size, img.mode) == ((256, 240), "L")
    assert files[0].name == "demo-test-AD-0000_00.jpeg"
    for split in D.SPLITS:
        for cls in D.CLASSES:
            s = D.load_slices(str(out), cls, split, 64)
            assert len(s) == 12 and s.subjects[0] == f"demo-{split}-{cls}-0000"
    demo = D.load_slices(None, "NC", "train", 64, demo_count=12).images.float()
    assert (D.load_slices(str(out), "NC", "train", 64).images.float() - demo).abs().mean() < 3
    before = snapshot(out)
    assert D.main(["--export", str(out), "--count", "12"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and str(out) in err and "--force" in err
    assert snapshot(out) == before


# ---------------------------------------------------------------- bad input

def test_bad_inputs_raise_one_line_errors(adni, tmp_path):
    (tmp_path / "empty" / "AD").mkdir(parents=True)
    (tmp_path / "vol" / "AD").mkdir(parents=True)
    write_volume(tmp_path / "vol" / "AD" / "good.nii.gz", box_volume())
    write_volume(tmp_path / "vol" / "AD" / "frames.nii.gz", np.zeros((8, 8, 8, 2)))
    (tmp_path / "vol" / "AD" / "broken.nii").write_bytes(b"not a volume")
    cases = [
        (dict(data=str(tmp_path / "missing"), class_name="AD"), str(tmp_path / "missing")),
        (dict(data=str(tmp_path / "empty"), class_name="AD"), str(tmp_path / "empty" / "AD")),
        (dict(data=str(tmp_path / "empty"), class_name="NC"), "NC"),
        (dict(data=str(adni), class_name="MCI"), "--class"),
        (dict(data=str(adni), class_name="AD", split="val"), "--split"),
        (dict(data=str(adni), class_name="AD", resolution=48), "--resolution"),
        (dict(data=str(adni), class_name="NC", split="test"), str(adni / "test" / "NC" / "U003_1.jpeg")),
        (dict(data=str(tmp_path / "vol"), class_name="AD"), "broken.nii"),
        (dict(data="demo", class_name="AD", resolution=512), "--resolution"),
    ]
    for kwargs, named in cases:
        with pytest.raises(D.DataError) as e:
            D.load_slices(**kwargs)
        assert named in str(e.value) and "\n" not in str(e.value), str(e.value)
    (tmp_path / "vol" / "AD" / "broken.nii").unlink()
    with pytest.raises(D.DataError, match=r"frames\.nii\.gz has shape \(8, 8, 8, 2\)"):
        D.load_slices(str(tmp_path / "vol"), "AD")
    s = D.load_slices(str(tmp_path / "vol"), "AD", skip_bad=True)
    assert s.skipped == 1 and s.subjects[0] == "good"


def test_source_folder_unchanged(adni):
    before = snapshot(adni)
    for split in D.SPLITS:
        for cls in D.CLASSES:
            D.load_slices(str(adni), cls, split, 16, skip_bad=True)
    assert snapshot(adni) == before


@pytest.mark.slow
def test_cli_exit_codes_and_bench(adni, capsys):
    run = subprocess.run([sys.executable, str(REPO / "dataset.py"), "--data", str(adni / "nowhere")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1 and "nowhere" in run.stderr
    for args, named in ((["--class", "XX"], "--class"), (["--class", "NC", "--split", "test"], "U003_1.jpeg")):
        assert D.main(["--data", str(adni), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and named in err, err
    assert D.main(["--data", str(adni), "--class", "NC", "--split", "test", "--skip-bad", "--resolution", "32"]) == 0
    captured = capsys.readouterr()
    assert "1 unreadable files skipped" in captured.out and "skipped 1 unreadable files" in captured.err
    assert D.main(["--data", str(adni), "--bench", "--resolution", "16", "--batch", "8"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["res"] for r in lines] == [4, 8, 16] and all(r["batch"] == 8 and r["images_per_s"] > 0 for r in lines)
