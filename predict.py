"""Generate brain MRI slices from the trained AD and NC generators (their EMA weights).

    python predict.py                                  # outputs/AD_images.png, NC_images.png: 9x9, seeds 0-80
    python predict.py --ad runs/AD/checkpoint.pt --n 16    # AD only, plus outputs/AD/seed0000.png .. seed0015.png
    python predict.py --seed 100 --grid 4 --psi 0.7    # 4x4 grids of seeds 100-115, truncated toward the average w
    python predict.py --interpolate 3 17 --frames 9    # outputs/<CLASS>_interpolation.png: seed 3 -> 17 in W
    python predict.py --mix 0-5 10-13 --grid 0         # only <CLASS>_mixing.png: 4x4, 8x8 styles from the top row

Seed k always gives the same z (modules.latents_for_seeds), the z that train.py's sample
grids use, so the default grid shows the latents of the training samples. --seed is one
number k (consecutive seeds k, k+1, ...) or a list of numbers and ranges ("0-80",
"3,7,20-29"), used in order: the grid takes the first N*N, --n the first N. With the
default constant noise an image depends on its seed alone, byte for byte, in every run.
--interpolate and --mix write their figures besides the grids (--grid 0 leaves the grids out).
"""
from __future__ import annotations

import argparse
import os

import torch

import core
import modules
from core import CLASSES, parse_seeds, writable_folder  # noqa: F401 (re-exported)
from core import UserError as InputError  # noqa: F401 (re-exported)
from sampling import (DEFAULT_CHECKPOINT, checkpoint_paths, load_generators, styles,  # noqa: F401 (re-exported)
                      synthesize, train_command)


def run_or_exit(fn, args: argparse.Namespace, errors: tuple = ()) -> None:
    """core.main for fn(args), also reporting checkpoint errors (and `errors`) as one line and exit code 2."""
    core.main(fn, args, errors=(modules.CheckpointError, *errors))


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
    p.add_argument("--noise", choices=["const", "random", "none"], default="const",
                   help="per-layer noise: the checkpoint's fixed maps (default, reproducible), "
                        "fresh noise seeded by the image's seed, or none")
    p.add_argument("--interpolate", type=int, nargs=2, metavar=("SEED_A", "SEED_B"),
                   help="also write <CLASS>_interpolation.png, a strip from SEED_A to SEED_B in W")
    p.add_argument("--frames", type=int, default=9, help="images in the interpolation strip (default 9)")
    p.add_argument("--mix", type=parse_seeds, nargs=2, metavar=("TOP", "LEFT"),
                   help="also write <CLASS>_mixing.png: coarse styles from the TOP seeds (a row), "
                        "fine styles from the LEFT seeds (a column), e.g. --mix 0-5 10-13")
    p.add_argument("--crossover", type=int,
                   help="style mixing: styles of resolutions up to this many pixels are coarse "
                        "(default 8, or 4 for an 8x8 generator)")
    return p.parse_args(argv)


def predict(args: argparse.Namespace) -> None:
    if args.grid < 0 or args.n < 0 or args.frames < 2:
        raise core.UserError("--grid and --n must be >= 0 and --frames >= 2")
    count = max(args.grid ** 2, args.n)
    what = f"a {args.grid}x{args.grid} grid" if args.grid ** 2 >= args.n else f"--n {args.n}"
    seeds = take_seeds(args.seed, count, what)
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
        images = synthesize(g, styles(g, seeds, args.psi), seeds, args.noise) if count else None
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


def main(argv: list[str] | None = None) -> None:
    run_or_exit(predict, parse_args(argv))


if __name__ == "__main__":
    main()
