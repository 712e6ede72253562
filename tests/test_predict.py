"""predict.py on tiny checkpoints made here: files, grid layout, reproducibility, bad input."""
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import modules
import predict
from conftest import ROOT, make_checkpoint, one_line_error

RES, BORDER = 16, 1  # the tiny preset's resolution; save_image_grid's border
CELL = RES + BORDER


def run(ckpts, out, *flags):
    predict.main(["--ad", ckpts["AD"], "--nc", ckpts["NC"], "--out", str(out), *map(str, flags)])


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L"
        return np.array(im)


def cell(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    y, x = BORDER + row * CELL, BORDER + col * CELL
    return grid[y:y + RES, x:x + RES]


def test_grids_and_single_images(ckpts, tmp_path):
    run(ckpts, tmp_path, "--n", 3)
    for cls in predict.CLASSES:
        grid = pixels(tmp_path / f"{cls}_images.png")
        assert grid.shape == (9 * CELL + BORDER,) * 2 == (154, 154)  # 9x9 cells of 16 px + 1 px borders
        border = inspect.signature(modules.save_image_grid).parameters["border_value"].default
        assert (grid[0] == border).all() and (grid[:, CELL] == border).all()  # borders
        singles = sorted(p.name for p in (tmp_path / cls).iterdir())
        assert singles == ["seed0000.png", "seed0001.png", "seed0002.png"]
        for k in range(3):  # single image k is grid cell k, byte for byte
            np.testing.assert_array_equal(pixels(tmp_path / cls / f"seed{k:04d}.png"), cell(grid, 0, k))
        assert len({cell(grid, r, c).tobytes() for r in range(9) for c in range(9)}) == 81
    assert not (pixels(tmp_path / "AD_images.png") == pixels(tmp_path / "NC_images.png")).all()


def grid_bytes(folder) -> bytes:
    return (folder / "AD_images.png").read_bytes()


def test_same_seed_same_bytes_other_seed_other_image(ckpts, tmp_path):
    run(ckpts, tmp_path / "a", "--seed", "0-80")
    run(ckpts, tmp_path / "b", "--seed", "0-80")
    run(ckpts, tmp_path / "c", "--seed", "100")
    run(ckpts, tmp_path / "d", "--seed", "100-103", "--grid", 2)
    assert grid_bytes(tmp_path / "a") == grid_bytes(tmp_path / "b")
    assert grid_bytes(tmp_path / "a") != grid_bytes(tmp_path / "c")
    # a single seed k means k, k+1, ...: the 2x2 grid of 100-103 is the top-left of --seed 100's grid
    c, d = pixels(tmp_path / "c" / "AD_images.png"), pixels(tmp_path / "d" / "AD_images.png")
    np.testing.assert_array_equal(cell(d, 1, 0), cell(c, 0, 2))


def test_random_noise_is_seeded_by_the_image_seed(ckpts, tmp_path):
    for name, noise in [("const", "const"), ("r1", "random"), ("r2", "random")]:
        run(ckpts, tmp_path / name, "--noise", noise, "--grid", 3)
    run(ckpts, tmp_path / "default", "--grid", 3)
    assert grid_bytes(tmp_path / "r1") == grid_bytes(tmp_path / "r2") != grid_bytes(tmp_path / "const")
    assert grid_bytes(tmp_path / "default") == grid_bytes(tmp_path / "r1")  # random, seeded per image, by default
    g = modules.load_generator(ckpts["AD"])
    want = modules.to_uint8(modules.sample(g, [4], noise_mode="random"))[0, 0].numpy()  # seed 4: row 1, column 1
    np.testing.assert_array_equal(cell(pixels(tmp_path / "default" / "AD_images.png"), 1, 1), want)


def test_psi_zero_makes_every_cell_the_average_image(ckpts, tmp_path):
    run(ckpts, tmp_path, "--psi", 0, "--noise", "const")  # one w and one noise map: one image
    grid = pixels(tmp_path / "AD_images.png")
    assert len({cell(grid, r, c).tobytes() for r in range(9) for c in range(9)}) == 1
    assert cell(grid, 0, 0).std() > 0  # an image, not a blank


def test_interpolation_and_style_mixing(ckpts, tmp_path):
    run(ckpts, tmp_path, "--interpolate", 4, 7, "--frames", 5, "--mix", "0-2", "5-6", "--noise", "const")
    grid = pixels(tmp_path / "AD_images.png")
    strip = pixels(tmp_path / "AD_interpolation.png")
    assert strip.shape == (CELL + BORDER, 5 * CELL + BORDER)
    np.testing.assert_array_equal(cell(strip, 0, 0), cell(grid, 0, 4))  # ends are the two seeds' images
    np.testing.assert_array_equal(cell(strip, 0, 4), cell(grid, 0, 7))
    mix = pixels(tmp_path / "AD_mixing.png")
    assert mix.shape == (3 * CELL + BORDER, 4 * CELL + BORDER)  # header row + 2 LEFT seeds, corner + 3 TOP seeds
    assert (cell(mix, 0, 0) == 0).all()  # blank corner
    for j in range(3):
        np.testing.assert_array_equal(cell(mix, 0, j + 1), cell(grid, 0, j))  # top row: seeds 0-2
    g = modules.load_generator(ckpts["AD"])
    for i, seed in enumerate([5, 6]):
        np.testing.assert_array_equal(cell(mix, i + 1, 0), cell(grid, 0, seed))  # left column: seeds 5, 6
        for j in range(3):  # styles of 4x4 and 8x8 (layers 0-3) from the top seed, 16x16 from the left one
            z_top, z_left = modules.latents_for_seeds([j, seed], g.z_dim)
            want = g(z_top[None], z_mix=z_left[None], crossover=4, noise_mode="const")
            np.testing.assert_array_equal(cell(mix, i + 1, j + 1), modules.to_uint8(want)[0, 0].numpy())
            assert (cell(mix, i + 1, j + 1) != cell(grid, 0, j)).any()


def test_one_class_alone_and_grid_zero(ckpts, tmp_path):
    predict.main(["--nc", ckpts["NC"], "--out", str(tmp_path), "--grid", "0", "--n", "2"])
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["seed0000.png", "seed0001.png"]
    assert pixels(tmp_path / "NC" / "seed0001.png").shape == (RES, RES)


def error_of(capsys, argv) -> str:
    return one_line_error(predict.main, argv, capsys)


def test_bad_input_gives_one_line_errors(ckpts, tmp_path, capsys):
    err = error_of(capsys, ["--ad", ckpts["NC"], "--out", str(tmp_path)])
    assert "--ad" in err and "class NC" in err and "--nc" in err
    missing = str(tmp_path / "runs" / "AD" / "checkpoint.pt")
    err = error_of(capsys, ["--ad", missing, "--out", str(tmp_path)])
    assert missing in err and "python train.py --class AD" in err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(open(ckpts["AD"], "rb").read()[:2000])  # a file cut short
    assert "unreadable" in error_of(capsys, ["--ad", str(corrupt), "--out", str(tmp_path)])
    (tmp_path / "a_file").write_text("x")
    err = error_of(capsys, ["--ad", ckpts["AD"], "--out", str(tmp_path / "a_file" / "sub")])
    assert "cannot write" in err and "a_file" in err
    assert "needs 81" in error_of(capsys, ["--ad", ckpts["AD"], "--out", str(tmp_path), "--seed", "0-9"])
    assert "--crossover" in error_of(capsys, ["--ad", ckpts["AD"], "--out", str(tmp_path),
                                              "--mix", "0", "1", "--crossover", "16"])
    assert list(tmp_path.glob("*.png")) == []  # nothing written by a refused run


@pytest.mark.slow
def test_command_line_exit_codes(ckpts, tmp_path):
    cmd = [sys.executable, "predict.py", "--out", str(tmp_path), "--grid", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ok = subprocess.run(cmd + ["--ad", ckpts["AD"]], cwd=ROOT, capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "AD_images.png").exists() and not (tmp_path / "NC_images.png").exists()
    bad = subprocess.run(cmd + ["--ad", ckpts["NC"]], cwd=ROOT, capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: --ad ") and bad.stderr.count("\n") == 1, bad.stderr


# ----------------------------------------------------------------------------- --pairs: children of one parent

def rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB")).astype(int)


def panel(figure: np.ndarray, row: int, col: int, side: int = predict.PANEL_PX) -> np.ndarray:
    """(RES, RES, 3): the colour at the centre of each image pixel of one panel of a --pairs figure."""
    inner = side - 2 * predict.GAP_PX
    centres = (np.arange(RES) + 0.5) * inner / RES
    ys = (predict.HEAD_PX + row * side + predict.GAP_PX + centres).astype(int)
    xs = (predict.LEFT_PX + col * side + predict.GAP_PX + centres).astype(int)
    return figure[ys[:, None], xs[None, :]]


def diff_colours(diff: np.ndarray, scale: float) -> np.ndarray:
    import matplotlib

    return np.round(255 * matplotlib.colormaps[predict.DIFF_CMAP]((diff + scale) / (2 * scale))[..., :3])


def test_pairs_rows_are_seeds_nc_ad_and_their_difference(siblings, tmp_path, capsys):
    predict.main(["--ad", siblings["AD"], "--nc", siblings["NC"], "--out", str(tmp_path), "--pairs",
                  "--seed", "5", "--grid", "3", "--atrophy-seeds", "20"])
    printed = capsys.readouterr().out
    fig, atrophy = rgb(tmp_path / "pairs.png"), rgb(tmp_path / "atrophy_map.png")
    assert fig.shape == (486, 574, 3) and predict.figure_size(3, 3) == (574, 486)  # 3 seeds, 3 panels and a bar
    assert atrophy.shape == (292, 636, 3) and predict.figure_size(2, 1, predict.MAP_PX) == (636, 292)
    assert (tmp_path / "AD_images.png").is_file() and (tmp_path / "NC_images.png").is_file()  # grids as always
    gens = {c: modules.load_generator(siblings[c]) for c in ("AD", "NC")}
    want = {c: modules.to_uint8(modules.sample(g, [5, 6, 7], noise_mode="random"))[:, 0].numpy().astype(int)
            for c, g in gens.items()}  # same z, same noise (seeded by the seed: the default), one image at a time
    diff = (want["AD"] - want["NC"]) / 255
    scale = np.abs(diff).max()
    assert 0 < scale < 1 and f"difference scale +-{scale:.3f}" in printed and "seeds 5..7" in printed
    for r in range(3):  # row r: seed 5 + r; NC, AD in grey, then AD - NC on the one shared scale
        for col, cls in enumerate(("NC", "AD")):
            assert np.abs(panel(fig, r, col) - want[cls][r][..., None]).max() <= 1, (r, cls)
        assert np.abs(panel(fig, r, 2) - diff_colours(diff[r], scale)).max() <= 2, r
    many = {c: modules.to_uint8(modules.sample(g, range(5, 25), noise_mode="random", batch=100))[:, 0].numpy()
            for c, g in gens.items()}
    mean = (many["AD"].astype(int) - many["NC"]).mean(0) / 255
    assert np.abs(panel(atrophy, 0, 1, predict.MAP_PX) - diff_colours(mean, np.abs(mean).max())).max() <= 2
    assert np.abs(panel(atrophy, 0, 0, predict.MAP_PX)[..., 0] - many["NC"].mean(0)).max() <= 1.5  # mean NC


def test_pairs_grid_zero_writes_only_the_atrophy_map(siblings, tmp_path):
    predict.main(["--ad", siblings["AD"], "--nc", siblings["NC"], "--out", str(tmp_path), "--pairs",
                  "--grid", "0", "--atrophy-seeds", "4"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atrophy_map.png"]


def test_pairs_refuses_generators_without_one_parent(ckpts, siblings, tmp_path, capsys):
    err = error_of(capsys, ["--ad", ckpts["AD"], "--nc", siblings["NC"], "--out", str(tmp_path), "--pairs"])
    for needle in (ckpts["AD"], "trained from scratch", siblings["NC"], "fine-tuned from runs/all/checkpoint.pt",
                   "python train.py --class all", "--init-from runs/all/checkpoint.pt"):
        assert needle in err, needle
    err = error_of(capsys, ["--ad", siblings["AD"], "--nc", siblings["NC"], "--out", str(tmp_path),
                            "--atrophy-seeds", "9"])
    assert "--atrophy-seeds applies to --pairs" in err
    parent = make_checkpoint(tmp_path / "all.pt", "all", seed=0)  # the pooled parent itself, passed as a class
    err = error_of(capsys, ["--ad", parent, "--out", str(tmp_path / "out")])
    assert f"--ad {parent} is a checkpoint of class all (a parent)" in err and f"--init-from {parent}" in err
    assert not (tmp_path / "out").exists() or not list(tmp_path.iterdir())  # nothing written by a refused run
