"""From checkpoints and seeds to images: the generators of a run's checkpoints, and the two ways of sampling them.

- `styles` + `synthesize` (predict.py, embedding.py): one image at a time, so an image never depends on its
  batch; noise 'const' (the checkpoint's fixed maps, reproducible), 'random' (seeded by the image's seed) or 'none'.
- `generate` (evaluate.py): many images in batches with random noise, as in training, from one torch seed.
Both are modules.sample's two modes (train.py's sample grids use it too).
- `noise_share` (evaluate.py, embedding.py): how much of the samples' variety the noise inputs carry rather than w.
- `pair_images` (predict.py --pairs): the same seeds through two children of one parent (`load_pair`), the
  same z and the same noise in both: partners, the same anatomy under two diagnoses.

Seed k always gives the same latent z (modules.latents_for_seeds), the z of train.py's sample grids.
"""
from __future__ import annotations

import copy
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


def checked_checkpoint(cls: str, path: str) -> modules.Checkpoint:
    """The checkpoint at `path`, refusing a missing file and a checkpoint of a class other than `cls`."""
    if not os.path.exists(path):
        raise UserError(f"{path} does not exist; train it first: {train_command(cls, path)}")
    ckpt = modules.Checkpoint.load(path)
    if ckpt.class_name not in CLASSES:  # the pooled parent of --init-from children
        raise UserError(f"--{cls.lower()} {path} is a checkpoint of class {ckpt.class_name} (a parent), not {cls}; "
                        f"fine-tune a child from it: python train.py --class {cls} --init-from {path}")
    if ckpt.class_name != cls:
        raise UserError(f"--{cls.lower()} {path} is a checkpoint of class {ckpt.class_name}, not {cls}; "
                        f"pass it as --{ckpt.class_name.lower()}")
    return ckpt


def load_generators(paths: dict[str, str]) -> dict[str, modules.Generator]:
    """Each class's EMA generator, refusing a checkpoint of the other class."""
    return {cls: checked_checkpoint(cls, path).ema_generator("cpu", path) for cls, path in paths.items()}


def _origin(ckpt: modules.Checkpoint) -> str:
    if not ckpt.parent.get("sha256"):
        return "trained from scratch"
    return f"fine-tuned from {ckpt.parent.get('path', '?')}, sha256 {ckpt.parent['sha256'][:12]}"


def load_pair(paths: dict[str, str], need_parent: str | None = None) -> tuple[dict[str, modules.Generator], str | None]:
    """The AD and NC generators of `paths` (both classes), and the sha256 of the parent checkpoint both were
    fine-tuned from (modules.shared_parent), None when they do not share one. `need_parent`: the flag that needs
    a shared parent (e.g. '--pairs'), refusing two generators without one in one line that says how to make them."""
    ckpts = {cls: checked_checkpoint(cls, paths[cls]) for cls in CLASSES}
    parent = modules.shared_parent(ckpts["AD"], ckpts["NC"])
    if parent is None and need_parent:
        ad, nc = (f"{paths[cls]} ({_origin(ckpts[cls])})" for cls in CLASSES)
        raise UserError(f"{need_parent} needs an AD and an NC generator fine-tuned from one parent, but {ad} and "
                        f"{nc} do not share one; make them: python train.py --class all --preset quick, then "
                        "python train.py --class AD --init-from runs/all/checkpoint.pt (and the same with --class NC)")
    return {cls: c.ema_generator("cpu", paths[cls]) for cls, c in ckpts.items()}, parent


# One image at a time (predict.py, embedding.py): modules.styles and modules.synthesize.
styles, synthesize = modules.styles, modules.synthesize


def generate(g: modules.Generator, n: int, seed: int, batch: int = 100) -> torch.Tensor:
    """uint8 (n, 1, R, R) in batches: image k from latent seed seed + k (predict.py's numbering of z) and
    random noise (as in training) from torch seed `seed` (modules.sample's batched mode). Two generators of one
    architecture given the same n and seed draw the same noise for image k: their image k are partners
    (pair_images), which evaluate.py's pair metrics use."""
    return modules.to_uint8(modules.sample(g, range(seed, seed + n), batch=batch, noise_seed=seed))


def pair_images(gens: dict[str, modules.Generator], seeds, *, psi: float = 1.0, noise_mode: str = "const",
                batch: int | None = None) -> dict[str, torch.Tensor]:
    """Partners: class -> images (N, C, R, R) in [-1, 1] of `seeds` from each generator (modules.sample), made
    alike so that only the generators differ: the same z per seed and the same noise. 'const' noise is each
    generator's fixed maps (seeded per layer, so the same in every generator of one architecture and inherited
    by children); 'random' noise is seeded by the image's seed (batch None) or drawn in one stream from torch seed
    seeds[0] (batch B: B images per call, fast), the same draws for generators of one architecture."""
    return {cls: modules.sample(g, seeds, psi=psi, noise_mode=noise_mode, batch=batch) for cls, g in gens.items()}


def _within_between(g: modules.Generator, seeds: range, draws: int, noise_seed: int) -> tuple[float, float]:
    """Law of total variance over the images of `seeds`, each drawn with `draws` noise draws: the mean over
    pixels of E_w[Var_noise] and of Var_w[E_noise] (the latter less the within part that a mean of `draws`
    draws still holds, so that it estimates the variance of the noise-free mean)."""
    x = torch.stack([modules.sample(g, seeds, batch=len(seeds), noise_seed=noise_seed + k).clamp(-1, 1).float()
                     for k in range(draws)], dim=1)  # (n, draws, C, R, R)
    within = x.var(dim=1).mean().item()
    between = x.mean(dim=1).var(dim=0).mean().item() - within / draws
    return within, max(between, 0.0)


@torch.no_grad()
def noise_share(g: modules.Generator, n: int = 64, draws: int = 4, seed: int = 0) -> dict:
    """How much of a generator's variety comes from its noise inputs rather than from w.

    The same `n` latents (seeds seed..seed+n-1) are drawn `draws` times with fresh random noise; the pixel
    variance across all these images splits into the part that changes with the noise at fixed w and the part
    that changes with w (law of total variance). `total` is the noise's fraction. `by_resolution` repeats the
    noise part with only that resolution's noise inputs on (the others' weights zeroed), over the same total: a
    resolution whose noise draws the layout shows here (the parts need not add up exactly). W-space tools
    (truncation, interpolation, style mixing, embedding.py's W plot) steer only the 1 - total part."""
    seeds = range(seed, seed + n)
    within, between = _within_between(g, seeds, draws, seed)
    variance = within + between
    out = {"total": within / variance if variance > 0 else 0.0, "by_resolution": {}, "n_w": n, "draws": draws}
    noisy = [res for res, block in zip(g.cfg.resolutions, g.blocks) if any(layer.noise is not None for layer in block)]
    for res in noisy if variance > 0 else []:
        alone = copy.deepcopy(g)
        for other, block in zip(g.cfg.resolutions, alone.blocks):
            for layer in block:
                if other != res and layer.noise is not None:
                    layer.noise.weight.zero_()
        out["by_resolution"][res] = _within_between(alone, seeds, draws, seed)[0] / variance
    return out


def noise_share_text(share: dict) -> str:
    """One line for a table: the noise's share in all and per resolution."""
    parts = ", ".join(f"{res} px {v:.0%}" for res, v in share["by_resolution"].items())
    return f"{share['total']:.0%} ({parts})" if parts else f"{share['total']:.0%}"
