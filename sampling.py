"""From checkpoints and seeds to images: the generators of a run's checkpoints, and the two ways of sampling them.

- `styles` + `synthesize` (predict.py, embedding.py): one image at a time, so an image never depends on its
  batch; noise 'const' (the checkpoint's fixed maps, reproducible), 'random' (seeded by the image's seed) or 'none'.
- `generate` (evaluate.py): many images in batches with random noise, as in training, from one torch seed.
Both are modules.sample's two modes (train.py's sample grids use it too).

Seed k always gives the same latent z (modules.latents_for_seeds), the z of train.py's sample grids.
"""
from __future__ import annotations

import os

import torch

import modules
from core import CLASSES, UserError

DEFAULT_CHECKPOINT = "runs/{}/checkpoint.pt"


def checkpoint_paths(ad: str | None, nc: str | None) -> dict[str, str]:
    """The classes to load: those given, or both default checkpoints when neither is."""
    given = {cls: path for cls, path in zip(CLASSES, (ad, nc)) if path is not None}
    return given or {cls: DEFAULT_CHECKPOINT.format(cls) for cls in CLASSES}


def train_command(cls: str, path: str) -> str:
    """The train.py command that writes the checkpoint `path`."""
    folder = os.path.dirname(path)
    out = "" if os.path.normpath(folder) == os.path.normpath(f"runs/{cls}") else f" --out {folder}"
    return f"python train.py --class {cls} --preset quick{out}"


def load_generators(paths: dict[str, str]) -> dict[str, modules.Generator]:
    """Each class's EMA generator, refusing a checkpoint of the other class."""
    gens = {}
    for cls, path in paths.items():
        if not os.path.exists(path):
            raise UserError(f"{path} does not exist; train it first: {train_command(cls, path)}")
        g = modules.load_generator(path)
        if g.class_name != cls:
            raise UserError(f"--{cls.lower()} {path} is a checkpoint of class {g.class_name}, not {cls}; "
                            f"pass it as --{g.class_name.lower()}")
        gens[cls] = g
    return gens


# One image at a time (predict.py, embedding.py): modules.styles and modules.synthesize.
styles, synthesize = modules.styles, modules.synthesize


def generate(g: modules.Generator, n: int, seed: int, batch: int = 100) -> torch.Tensor:
    """uint8 (n, 1, R, R) in batches: image k from latent seed seed + k (predict.py's numbering of z) and
    random noise (as in training) from torch seed `seed` (modules.sample's batched mode)."""
    return modules.to_uint8(modules.sample(g, range(seed, seed + n), batch=batch, noise_seed=seed))
