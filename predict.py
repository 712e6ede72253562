"""Generate brain MRI slices from the trained AD and NC generators (their EMA weights).

    python predict.py                                  # outputs/AD_images.png, NC_images.png: 9x9, seeds 0-80
    python predict.py --ad runs/AD/checkpoint.pt --n 16    # AD only, plus outputs/AD/seed0000.png .. seed0015.png
    python predict.py --seed 100 --grid 4 --psi 0.7    # 4x4 grids of seeds 100-115, truncated toward the average w
    python predict.py --interpolate 3 17 --frames 9    # outputs/<CLASS>_interpolation.png: seed 3 -> 17 in W
    python predict.py --mix 0-5 10-13 --grid 0         # only <CLASS>_mixing.png: 4x4, 8x8 styles from the top row
    python predict.py --pairs                          # also pairs.png and atrophy_map.png (children of one parent)

Seed k always gives the same z (modules.latents_for_seeds), the z that train.py's sample
grids use, so the default grid shows the latents of the training samples. --seed is one
number k (consecutive seeds k, k+1, ...) or a list of numbers and ranges ("0-80",
"3,7,20-29"), used in order: the grid takes the first N*N, --n the first N. The noise inputs
are drawn from torch seed k too (--noise random, the default), so an image depends on its seed
alone, byte for byte, in every run. --noise const gives every image the checkpoint's one fixed
noise map per layer instead: where the noise carries much of the variety (evaluate.py's noise
share: most of it in the quick demo's generators), such a grid repeats one brain's layout.
--interpolate and --mix write their figures besides the grids (--grid 0 leaves the grids out).

--pairs needs an AD and an NC generator fine-tuned from one parent (train.py --class all, then --init-from):
the same seed then gives the same anatomy in both. pairs.png: per seed (the grid's first --grid seeds) a row
NC | AD | AD - NC, the same z and the same noise in both, the difference on one symmetric colour scale for the
whole figure (blue: darker in AD). atrophy_map.png: the mean AD - NC difference over --atrophy-seeds seeds
(k, k+1, ... from the first --seed), beside the mean NC image.
"""
from __future__ import annotations

import argparse
import os

import torch

import core
import modules
import sampling
from core import CLASSES, parse_seeds, writable_folder  # noqa: F401 (re-exported)
from core import UserError as InputError  # noqa: F401 (re-exported)
from sampling import (DEFAULT_CHECKPOINT, checkpoint_paths, load_generators, styles,  # noqa: F401 (re-exported)
                      synthesize, train_command)


# ----------------------------------------------------------------------------- generation

def take_seeds(seeds: list[int], count: int, what: str) -> list[int]:
    """The first `count` seeds; a single seed k stands for k, k+1, k+2, ..."""
    if len(seeds) == 1:
        return list(range(seeds[0], seeds[0] + count))
    if len(seeds) < count:
        raise core.UserError(f"--seed gives {len(seeds)} seeds but {what} needs {count}; "
                             "give a longer range, or a single start seed")
    return seeds[:count]


def save_singles(images: torch.Tensor, seeds: list[int], folder: str) -> None:
    """One 8-bit grayscale PNG per image, named by seed."""
    from PIL import Image

    for pix, seed in zip(modules.to_uint8(images)[:, 0], seeds):
        core.save_image_atomic(Image.fromarray(pix.numpy(), mode="L"), os.path.join(folder, f"seed{seed:04d}.png"))


def interpolation(g: modules.Generator, a: int, b: int, frames: int, psi: float, noise_mode: str) -> torch.Tensor:
    """`frames` images on the straight line from seed a's w to seed b's (noise of seed a throughout)."""
    wa, wb = styles(g, [a, b], psi)
    t = torch.linspace(0, 1, frames)[:, None]
    return synthesize(g, torch.lerp(wa, wb, t), [a] * frames, noise_mode)


def mixing_grid(g: modules.Generator, top: list[int], left: list[int], crossover: int, psi: float,
                noise_mode: str) -> torch.Tensor:
    """StyleGAN's figure: a blank corner and the `top` seeds' images, then per `left` seed its own image
    and, under each top seed, an image with that top seed's styles of resolutions <= `crossover` px
    (coarse: pose, shape) and the left seed's styles of the finer resolutions."""
    layer = 2 * crossover.bit_length() - 4  # resolution 4 * 2**s owns style layers 2s, 2s + 1
    w_top, w_left = styles(g, top, psi), styles(g, left, psi)
    rows = [torch.full((1, g.cfg.image_channels, g.resolution, g.resolution), -1.0),
            synthesize(g, w_top, top, noise_mode)]
    for w, seed in zip(w_left, left):
        rows.append(synthesize(g, w[None], [seed], noise_mode))
        mixed = g.mix(w_top, w[None].expand(len(top), -1), layer)
        rows.append(synthesize(g, mixed, [seed] * len(top), noise_mode))
    return torch.cat(rows)


# ----------------------------------------------------------------------------- paired children (--pairs)

PANEL_PX, MAP_PX, GAP_PX = 150, 256, 4  # a panel of pairs.png, of atrophy_map.png, the gap around each image
LEFT_PX, HEAD_PX, FOOT_PX, BAR_PX, FIGURE_DPI = 24, 30, 6, 100, 100  # margins and colour bar column
DIFF_CMAP = "RdBu_r"  # diverging: blue where AD is darker than NC (more CSF), red where brighter


def figure_size(cols: int, rows: int, panel: int = PANEL_PX) -> tuple[int, int]:
    """The PNG's (width, height) in pixels for rows x cols panels of `panel` px and the colour bar column."""
    return LEFT_PX + cols * panel + BAR_PX, HEAD_PX + rows * panel + FOOT_PX


def difference_scale(diff: torch.Tensor) -> float:
    """The symmetric colour scale [-s, s] of a difference image set: its largest |value| (at least one grey level)."""
    return max(diff.abs().max().item(), 1 / 255)


def _figure(cols: int, rows: int, panel: int = PANEL_PX):
    """A matplotlib figure (no pyplot) of figure_size(cols, rows, panel): rows x cols square image axes and, to
    their right, an axes for the colour bar; every position in pixels, so the layout is the same every time."""
    from matplotlib.figure import Figure

    w, h = figure_size(cols, rows, panel)
    fig = Figure(figsize=(w / FIGURE_DPI, h / FIGURE_DPI), dpi=FIGURE_DPI)
    side = panel - 2 * GAP_PX
    axes = [[fig.add_axes(((LEFT_PX + c * panel + GAP_PX) / w, (h - HEAD_PX - (r + 1) * panel + GAP_PX) / h,
                           side / w, side / h), xticks=[], yticks=[]) for c in range(cols)] for r in range(rows)]
    bar = fig.add_axes(((LEFT_PX + cols * panel + 12) / w, (FOOT_PX + GAP_PX) / h, 14 / w,
                        (rows * panel - 2 * GAP_PX) / h))
    return fig, axes, bar


def _panels(ax_image, ax_diff, image: torch.Tensor, diff: torch.Tensor, scale: float):
    """An intensity image in grey and a difference on the diverging map; returns the difference's artist."""
    ax_image.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    return ax_diff.imshow(diff.numpy(), cmap=DIFF_CMAP, vmin=-scale, vmax=scale, interpolation="nearest")


def _colour_bar(fig, artist, bar) -> None:
    fig.colorbar(artist, cax=bar).set_label("AD - NC intensity (0-1); blue: darker in AD", fontsize=8)
    bar.tick_params(labelsize=7)


def unit(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (N, 1, R, R) -> (N, R, R) in [0, 1] as the PNGs show them (8-bit levels)."""
    return modules.to_uint8(images)[:, 0].float() / 255


def pairs_figure(pairs: dict[str, torch.Tensor], seeds: list[int], path: str) -> float:
    """pairs.png: per seed a row NC | AD | AD - NC, the differences on one shared symmetric scale; returns it."""
    nc, ad = unit(pairs["NC"]), unit(pairs["AD"])
    diff = ad - nc
    scale = difference_scale(diff)
    fig, axes, bar = _figure(3, len(seeds))
    for row, seed, a, b, d in zip(axes, seeds, nc, ad, diff):
        row[0].imshow(a.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        artist = _panels(row[1], row[2], b, d, scale)
        row[0].set_ylabel(f"seed {seed}", fontsize=8)
    for ax, title in zip(axes[0], ("NC", "AD", "AD - NC")):
        ax.set_title(title, fontsize=9)
    _colour_bar(fig, artist, bar)
    core.save_figure_atomic(fig, path, dpi=FIGURE_DPI)
    return scale


def atrophy_figure(pairs: dict[str, torch.Tensor], seeds: list[int], path: str) -> torch.Tensor:
    """atrophy_map.png: the mean NC image and the mean AD - NC difference over the seeds; returns that mean."""
    nc, ad = unit(pairs["NC"]), unit(pairs["AD"])
    mean = (ad - nc).mean(0)
    fig, ((left, right),), bar = _figure(2, 1, MAP_PX)
    artist = _panels(left, right, nc.mean(0), mean, difference_scale(mean))
    left.set_title("mean NC image", fontsize=9)
    right.set_title(f"mean AD - NC over {len(seeds)} seeds", fontsize=9)
    _colour_bar(fig, artist, bar)
    core.save_figure_atomic(fig, path, dpi=FIGURE_DPI)
    return mean


def write_pairs(gens: dict[str, modules.Generator], seeds: list[int], args: argparse.Namespace, out: str) -> None:
    """--pairs: pairs.png of the grid's seeds (none with --grid 0) and atrophy_map.png of --atrophy-seeds seeds."""
    if seeds:
        path = os.path.join(out, "pairs.png")
        scale = pairs_figure(sampling.pair_images(gens, seeds, psi=args.psi, noise_mode=args.noise), seeds, path)
        print(f"{path}: NC | AD | AD - NC for seeds {seeds[0]}..{seeds[-1]} (same z and noise), "
              f"difference scale +-{scale:.3f}")
    if args.atrophy_seeds:
        path = os.path.join(out, "atrophy_map.png")
        many = list(range(args.seed[0], args.seed[0] + args.atrophy_seeds))
        mean = atrophy_figure(sampling.pair_images(gens, many, psi=args.psi, noise_mode=args.noise, batch=100),
                              many, path)
        print(f"{path}: mean AD - NC over seeds {many[0]}..{many[-1]} beside the mean NC image; "
              f"most negative (darker in AD) {mean.min().item():+.3f}, most positive {mean.max().item():+.3f}")


# ----------------------------------------------------------------------------- script

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ad", help=f"AD checkpoint (default {DEFAULT_CHECKPOINT.format('AD')}, "
                                "unless only --nc is given)")
    p.add_argument("--nc", help=f"NC checkpoint (default {DEFAULT_CHECKPOINT.format('NC')}, "
                                "unless only --ad is given)")
    p.add_argument("--out", default="outputs", help="output folder (default outputs/)")
    p.add_argument("--grid", type=int, default=9, help="write an N x N grid per class (default 9; 0 = none)")
    p.add_argument("--n", type=int, default=0, help="also write N single PNGs per class into <out>/<CLASS>/")
    p.add_argument("--seed", type=parse_seeds, default=[0],
                   help="one start seed k (seeds k, k+1, ...) or a list such as 0-80 or 3,7,20-29 (default 0)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation toward the average w (default 1 = none)")
    p.add_argument("--noise", choices=["const", "random", "none"], default="random",
                   help="per-layer noise: drawn from the image's own seed (default; reproducible, and the "
                        "variety evaluate.py measures), the checkpoint's one fixed map for every image, or none")
    p.add_argument("--interpolate", type=int, nargs=2, metavar=("SEED_A", "SEED_B"),
                   help="also write <CLASS>_interpolation.png, a strip from SEED_A to SEED_B in W")
    p.add_argument("--frames", type=int, default=9, help="images in the interpolation strip (default 9)")
    p.add_argument("--mix", type=parse_seeds, nargs=2, metavar=("TOP", "LEFT"),
                   help="also write <CLASS>_mixing.png: coarse styles from the TOP seeds (a row), "
                        "fine styles from the LEFT seeds (a column), e.g. --mix 0-5 10-13")
    p.add_argument("--crossover", type=int,
                   help="style mixing: styles of resolutions up to this many pixels are coarse "
                        "(default 8, or 4 for an 8x8 generator)")
    p.add_argument("--pairs", action="store_true",
                   help="also write pairs.png (per seed NC | AD | AD - NC) and atrophy_map.png; needs an AD and "
                        "an NC generator fine-tuned from one parent (default runs/AD and runs/NC checkpoints)")
    p.add_argument("--atrophy-seeds", type=int, default=None,
                   help="with --pairs: seeds averaged in atrophy_map.png (default 500; 0 = no map)")
    return p.parse_args(argv)


def predict(args: argparse.Namespace) -> None:
    if args.grid < 0 or args.n < 0 or args.frames < 2 or (args.atrophy_seeds or 0) < 0:
        raise core.UserError("--grid, --n and --atrophy-seeds must be >= 0 and --frames >= 2")
    if args.atrophy_seeds is not None and not args.pairs:
        raise core.UserError("--atrophy-seeds applies to --pairs; add --pairs or leave it out")
    args.atrophy_seeds = 500 if args.atrophy_seeds is None else args.atrophy_seeds
    count = max(args.grid ** 2, args.n)
    what = f"a {args.grid}x{args.grid} grid" if args.grid ** 2 >= args.n else f"--n {args.n}"
    seeds = take_seeds(args.seed, count, what)
    if args.pairs:  # both classes, children of one parent
        paths = {cls: path or DEFAULT_CHECKPOINT.format(cls) for cls, path in zip(CLASSES, (args.ad, args.nc))}
        gens = sampling.load_pair(paths, need_parent="--pairs")[0]
    else:
        gens = load_generators(checkpoint_paths(args.ad, args.nc))
    crossover = {cls: args.crossover or (8 if g.resolution > 8 else 4) for cls, g in gens.items()}
    for cls, g in gens.items():  # refuse bad settings before writing anything
        if args.psi != 1.0 and not g.mapping.w_avg.any():
            raise core.UserError(f"the {cls} checkpoint has no average w (all zero), so --psi cannot truncate")
        c = crossover[cls]
        if args.mix and (not 4 <= c < g.resolution or c & (c - 1)):
            raise core.UserError(f"--crossover must be a power of two from 4 to {g.resolution // 2} "
                                 f"for the {g.resolution}x{g.resolution} {cls} generator, got {c}")
    out = writable_folder(args.out)
    for cls, g in gens.items():
        res = f"{g.resolution}x{g.resolution}"
        images = modules.sample(g, seeds, psi=args.psi, noise_mode=args.noise) if count else None
        if args.grid:
            path = os.path.join(out, f"{cls}_images.png")
            modules.save_image_grid(images[:args.grid ** 2], path, nrow=args.grid)
            print(f"{path}: {args.grid}x{args.grid} grid of {res} {cls} images, "
                  f"seeds {seeds[0]}..{seeds[args.grid ** 2 - 1]}")
        if args.n:
            folder = writable_folder(os.path.join(out, cls))
            save_singles(images[:args.n], seeds[:args.n], folder)
            print(f"{folder}/: {args.n} {res} images, seed{seeds[0]:04d}.png .. seed{seeds[args.n - 1]:04d}.png")
        if args.interpolate:
            path = os.path.join(out, f"{cls}_interpolation.png")
            strip = interpolation(g, *args.interpolate, args.frames, args.psi, args.noise)
            modules.save_image_grid(strip, path, nrow=args.frames)
            print(f"{path}: seed {args.interpolate[0]} -> {args.interpolate[1]} in W, {args.frames} frames")
        if args.mix:
            top, left = args.mix
            path = os.path.join(out, f"{cls}_mixing.png")
            grid = mixing_grid(g, top, left, crossover[cls], args.psi, args.noise)
            modules.save_image_grid(grid, path, nrow=len(top) + 1)
            print(f"{path}: styles up to {crossover[cls]}x{crossover[cls]} from {len(top)} top seeds, "
                  f"the finer ones from {len(left)} left seeds")
    if args.pairs:
        write_pairs(gens, seeds[:args.grid], args, out)


def main(argv: list[str] | None = None) -> None:
    core.main(predict, parse_args(argv))


if __name__ == "__main__":
    main()
