"""How good are a checkpoint's images? Offline metrics against real slices, each beside its real-vs-real floor.

    python evaluate.py --ckpt runs/AD/checkpoint.pt        # the run's own data (demo), 2000 samples -> runs/AD/eval/
    python evaluate.py --ckpt runs/NC/checkpoint.pt --data /data/ADNI --n 5000 --out outputs/eval_NC
    python evaluate.py --train-encoder --data /data/ADNI --resolution 64    # (re)train only the AD-vs-NC encoder
    python evaluate.py --ckpt runs/AD/checkpoint.pt --inception-weights weights-inception-2015-12-05-6726825d.pth

Two columns per metric: "generated" compares the generator's samples with its class's real training slices;
"real test" compares held-out real slices of that class (other subjects) with the same training slices, with
the same sample counts: the value a perfect generator would reach. Nothing is downloaded:
- SWD: sliced Wasserstein distance of 7x7 patches of a Laplacian pyramid, down to 16x16 (ProGAN); x1e3.
- An encoder, a small CNN trained here to tell AD from NC on the real training split (cached; --train-encoder
  retrains it), gives the feature space of the Frechet distance, KID and k-NN precision/recall (k = 3), and
  class fidelity: the fraction of samples the encoder assigns to the generator's class.
- MS-SSIM of random pairs: diversity (lower = more diverse). Memorization audit: distance of each image to
  its nearest training slice (or its mirror image), in encoder features and in pixels, and the fraction
  closer than the 1st percentile of held-out real slices; the closest pairs go to memorization_pairs.png.
- Inception FID only with --inception-weights (torch-fidelity's InceptionV3 file) and torch-fidelity installed.
Generated image k has the latent z of seed --seed + k (predict.py's seeds) and random noise, as in training.
The output folder (--out, default <checkpoint folder>/eval) gets metrics.json and the PNG.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance  # not re-exported without torch-fidelity

import dataset
import metrics
import modules
import predict
from metrics import (BATCH, KID_SUBSET_SIZE, KID_SUBSETS, KNN_K, MEMO_PERCENTILE, MIN_RES,  # noqa: F401 (re-exported)
                     MSSSIM_PAIRS, PIXEL_RES, SWD_DIRS, SWD_PATCH, SWD_PATCHES, SWD_REPEATS, Audit, _batches,
                     _device, frechet_distance, kernel_distance, knn_precision_recall, laplacian_pyramid,
                     memorization_audit, ms_ssim_diversity, msssim_settings, nearest, pixels, pyr_up,
                     sliced_wasserstein, swd, with_mirrors)
from predict import InputError

CLASSES = dataset.CLASSES
ENCODER_FORMAT = "brain-stylegan-encoder"
ENCODER_VERSION = 1
MEMO_PAIRS_SHOWN = 12
TEST_FRACTION = 0.2         # subjects held out when the data has no test split


# ----------------------------------------------------------------------------- real data, split by subject

@dataclass
class Split:
    """One class's real slices, train and held out, from disjoint subjects."""
    train: dataset.SliceSet
    test: dataset.SliceSet
    notes: list[str]


def subject_split(subjects: list[str], test_fraction: float = TEST_FRACTION) -> torch.Tensor:
    """Bool mask (True = test) holding out ceil(test_fraction * subjects) whole subjects, chosen by a hash
    of the subject id: the same subjects on every machine, and never one subject on both sides."""
    unique = sorted(set(subjects), key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    if len(unique) < 2:
        raise dataset.DataError(f"only {len(unique)} subject in the data; a train/test split needs at least 2")
    held_out = set(unique[:max(1, math.ceil(test_fraction * len(unique)))])
    return torch.tensor([s in held_out for s in subjects])


def _subset(s: dataset.SliceSet, mask: torch.Tensor, split: str) -> dataset.SliceSet:
    return dataset.SliceSet(s.images[mask], [sub for sub, m in zip(s.subjects, mask.tolist()) if m],
                            s.class_name, split, s.source)


def _resplit(s: dataset.SliceSet) -> tuple[dataset.SliceSet, dataset.SliceSet]:
    test = subject_split(s.subjects)
    return _subset(s, ~test, "train"), _subset(s, test, "test")


def load_split(data: str, class_name: str, resolution: int, demo_count: int | None, data_seed: int,
               skip_bad: bool = False) -> Split:
    """Train and held-out slices of one class at `resolution`.

    Demo: the train split train.py uses (`demo_count` slices, default 2000) and as many from the demo test
    split. A folder with train/ and test/: those, re-split by subject if a subject id is on both sides.
    A folder without them: 80/20 by subject."""
    load = dict(skip_bad=skip_bad, demo_count=demo_count, seed=data_seed)
    if data == "demo":  # a held-out split as large as the training one, so --n 2000 has 2000 reals to match
        count = demo_count or dataset.DEMO_COUNT["train"]
        return Split(dataset.load_slices("demo", class_name, "train", resolution, **load),
                     dataset.load_slices("demo", class_name, "test", resolution, **{**load, "demo_count": count}), [])
    root = Path(data)
    if (root / "train" / class_name).is_dir() and (root / "test" / class_name).is_dir():
        train = dataset.load_slices(data, class_name, "train", resolution, **load)
        test = dataset.load_slices(data, class_name, "test", resolution, **load)
        shared = set(train.subjects) & set(test.subjects)
        if not shared:
            return Split(train, test, [])
        pooled = dataset.SliceSet(torch.cat([train.images, test.images]), train.subjects + test.subjects,
                                  class_name, "train", f"{train.source} + {test.source}")
        return Split(*_resplit(pooled), [
            f"{len(shared)} {class_name} subjects (e.g. {min(shared)}) have slices in both {root}/train and "
            f"{root}/test; re-split by subject, {TEST_FRACTION:.0%} of subjects held out"])
    pooled = dataset.load_slices(data, class_name, "train", resolution, **load)
    return Split(*_resplit(pooled), [
        f"{root} has no train/{class_name} and test/{class_name} folders: {TEST_FRACTION:.0%} of the {class_name} "
        "subjects held out; a generator trained on this folder saw them too, so they are not held out from it"])


def data_key(data: str, demo_count: int | None, data_seed: int) -> str:
    """Names the real data in the encoder cache: the demo set's size and seed, or a folder's absolute path."""
    if data == "demo":
        return f"demo-n{demo_count or dataset.DEMO_COUNT['train']}-s{data_seed}"
    path = str(Path(data).resolve())
    return f"{Path(path).name}-{hashlib.sha256(path.encode()).hexdigest()[:10]}"


# ----------------------------------------------------------------------------- the encoder



class Encoder(nn.Module):
    """Small CNN for 1-channel R x R slices: a 3x3 conv at full size, then per halving a 2x2 average pool and a
    3x3 conv with twice the channels (at most 128), down to 4x4; BatchNorm and ReLU after each conv; then a
    linear layer on the flattened 4x4 map (slices are aligned, so where a feature sits matters).

    forward(x) gives these penultimate features (N, num_features), centred and scaled to unit mean variance
    on the real training slices (so distances and KID's polynomial kernel see O(1) values): the feature
    space of the distances. classify(x) gives AD/NC logits. x is uint8 in [0, 255] (what torchmetrics passes
    with normalize=False) or float in [-1, 1] (the generator's range).
    """

    def __init__(self, resolution: int, width: int = 8, num_features: int = 128):
        super().__init__()
        self.resolution, self.width, self.num_features = resolution, width, num_features
        layers, c_in = [], 1
        for i in range(int(math.log2(resolution // 4)) + 1):
            c = min(width * 2 ** i, 128)
            layers += [nn.AvgPool2d(2)] if i else []
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.trunk = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 16, num_features), nn.ReLU())
        self.head = nn.Linear(num_features, len(CLASSES))
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_scale", torch.ones(()))

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1:] == (1, self.resolution, self.resolution), x.shape
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1.0
        return self.embed(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self._embed(x) - self.feature_mean) / self.feature_scale

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._embed(x))

    @torch.no_grad()
    def standardize(self, images: torch.Tensor, batch: int = BATCH) -> None:
        """Set the feature centre and scale from uint8 `images` (the real training slices)."""
        f = torch.cat([self._embed(x) for x in images.split(batch)]).double()
        self.feature_mean.copy_(f.mean(0))
        self.feature_scale.fill_(f.var(0).mean().sqrt().clamp_min(1e-8).item())


@torch.no_grad()
def encoder_outputs(encoder: Encoder, images: torch.Tensor, batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, F), predicted class index (N,)) of uint8 images, on the CPU."""
    device = _device(encoder)
    feats, preds = [], []
    for x in images.split(batch):
        raw = encoder._embed(x.to(device))
        feats.append(((raw - encoder.feature_mean) / encoder.feature_scale).cpu())
        preds.append(encoder.head(raw).argmax(1).cpu())
    return torch.cat(feats), torch.cat(preds)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Float slices (N, 1, R, R) in [-1, 1], each shifted by up to R/16 px (black fill) and its intensities
    scaled by 0.9-1.1: the encoder then learns anatomy rather than the training slices themselves, so held-out
    slices sit as close to the training slices in its features as new training slices would."""
    n, _, h, w = x.shape
    pad = max(1, h // 16)
    dy, dx = (torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=generator).to(x.device) for _ in range(2))
    rows, cols = dy + torch.arange(h, device=x.device)[:, None], dx + torch.arange(w, device=x.device)[None, :]
    x = F.pad(x, (pad, pad, pad, pad), value=-1.0)[torch.arange(n, device=x.device)[:, None, None], 0, rows, cols]
    scale = 0.9 + 0.2 * torch.rand(n, 1, 1, generator=generator).to(x.device)
    return ((x + 1) * scale - 1).clamp(-1, 1)[:, None]


def train_encoder(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], seed: int, steps: int = 500,
                  device: str | torch.device = "cpu", batch: int = 64, lr: float = 3e-3) -> tuple[Encoder, dict]:
    """Train an Encoder for `steps` batches of uint8 slices per class (random flips, shifts and contrast),
    then score it on `test`.

    Returns the encoder (eval mode, no grad) and its report: test accuracy overall and per class, counts."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    res = train[CLASSES[0]].shape[-1]
    x = torch.cat([train[c] for c in CLASSES])
    y = torch.cat([torch.full((len(train[c]),), i) for i, c in enumerate(CLASSES)])
    enc = Encoder(res).to(device)
    opt = torch.optim.AdamW(enc.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    enc.train()
    order = torch.cat([torch.randperm(len(x), generator=gen) for _ in range(math.ceil(steps * batch / len(x)))])
    for idx in order[:steps * batch].split(batch):  # whole epochs in random order, cut at `steps`
        logits = enc.classify(augment(dataset.prepare_batch(x[idx].to(device), gen), gen))
        loss = F.cross_entropy(logits, y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    enc.eval().requires_grad_(False)
    enc.standardize(x.to(device))
    class_acc = {c: encoder_outputs(enc, test[c])[1].eq(i).float().mean().item() for i, c in enumerate(CLASSES)}
    n_test = {c: len(test[c]) for c in CLASSES}
    report = {"test_accuracy": sum(class_acc[c] * n_test[c] for c in CLASSES) / sum(n_test.values()),
              "class_accuracy": class_acc, "n_train": {c: len(train[c]) for c in CLASSES}, "n_test": n_test,
              "steps": steps, "batch": batch, "seed": seed}
    return enc, report


def save_encoder(enc: Encoder, info: dict, path: str) -> None:
    """Atomic write of plain types (the weights and `info`: accuracy, data...), loadable with weights_only=True."""
    modules.save_checkpoint({"format": ENCODER_FORMAT, "version": ENCODER_VERSION, "classes": list(CLASSES),
                             "resolution": enc.resolution, "width": enc.width, "num_features": enc.num_features,
                             "state_dict": enc.state_dict(), **info}, path)


def load_encoder(path: str, device: str | torch.device = "cpu") -> tuple[Encoder, dict]:
    """The encoder of an encoder checkpoint (eval mode, no grad) and the checkpoint's other fields."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, or not a torch file
        raise modules.CheckpointError(f"encoder {path} is unreadable ({type(e).__name__}); "
                                      "delete it or pass --train-encoder to retrain it") from None
    if not isinstance(state, dict) or state.get("format") != ENCODER_FORMAT:
        raise modules.CheckpointError(f"{path} is not an encoder checkpoint (no '{ENCODER_FORMAT}' format tag)")
    if state.get("version") != ENCODER_VERSION or list(state.get("classes", [])) != list(CLASSES):
        raise modules.CheckpointError(f"encoder {path} has version {state.get('version')} and classes "
                                      f"{state.get('classes')}; pass --train-encoder to retrain it")
    enc = Encoder(state["resolution"], state["width"], state["num_features"])
    enc.load_state_dict(state.pop("state_dict"))
    return enc.to(device).eval().requires_grad_(False), state


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- encoder metrics

def class_fidelity(predicted: torch.Tensor, class_name: str) -> float:
    """Fraction of predicted class indices (encoder outputs) that are `class_name`."""
    return predicted.eq(CLASSES.index(class_name)).double().mean().item()



# ----------------------------------------------------------------------------- generation

@torch.no_grad()
def generate(g: modules.Generator, n: int, seed: int, batch: int = 100) -> torch.Tensor:
    """uint8 (n, 1, R, R) in batches: image k from latent seed seed + k (predict.py's numbering of z) and
    random noise (as in training) from torch seed `seed`."""
    device = g.const.device
    z = modules.latents_for_seeds(range(seed, seed + n), g.z_dim)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return torch.cat([modules.to_uint8(g(zb.to(device), noise_mode="random")) for zb in z.split(batch)])


# ----------------------------------------------------------------------------- the script

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", help="checkpoint to evaluate (its class, resolution and training data come from it)")
    p.add_argument("--data", help="'demo' or an ADNI/NIfTI folder (default: the checkpoint's training data, else demo)")
    p.add_argument("--n", type=int, default=2000, help="generated images (default 2000)")
    p.add_argument("--out", help="folder for metrics.json and memorization_pairs.png (default <ckpt folder>/eval)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the latents (seeds SEED..SEED+n-1), subsets, patches, projections and the encoder")
    p.add_argument("--encoder", help="encoder checkpoint to use, or to create if missing "
                                     "(default: one per data set, resolution and seed in the cache folder)")
    p.add_argument("--train-encoder", action="store_true",
                   help="(re)train the encoder and overwrite its file; alone (no --ckpt) only that")
    p.add_argument("--encoder-steps", type=int, default=500,
                   help="batches of 64 slices the encoder trains on (default 500)")
    p.add_argument("--resolution", type=int,
                   help="with --train-encoder and no --ckpt: the encoder's resolution (default 64)")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="torch-fidelity's InceptionV3 weights file (weights-inception-2015-12-05-6726825d.pth) "
                        "to add the standard FID; needs torch-fidelity installed (slow on a CPU)")
    p.add_argument("--demo-count", type=int,
                   help="demo slices per class in each of train and test (default: the checkpoint's, else 2000)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable data files instead of stopping")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu, cuda or cuda:N (default: CUDA when present)")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse unusable flags before any slow work."""
    if args.ckpt is None and not args.train_encoder:
        raise InputError("pass --ckpt CHECKPOINT to evaluate, or --train-encoder to only train the encoder")
    if args.ckpt is not None and not os.path.isfile(args.ckpt):
        raise InputError(f"checkpoint {args.ckpt} does not exist; pass the checkpoint.pt of a train.py run")
    if args.inception_weights is not None and not os.path.isfile(args.inception_weights):
        raise InputError(f"--inception-weights {args.inception_weights} does not exist; pass torch-fidelity's "
                         "weights-inception-2015-12-05-6726825d.pth, or leave the flag out")
    if args.n < 16:
        raise InputError(f"--n {args.n} is too few; pass --n 16 or more (2000 for figures worth reporting)")
    if args.encoder_steps < 1:
        raise InputError("--encoder-steps must be at least 1")
    if args.ckpt is not None and args.resolution is not None:
        raise InputError("--resolution applies to --train-encoder without --ckpt; the checkpoint fixes it")
    if args.demo_count is not None and args.demo_count < 1:
        raise InputError(f"--demo-count {args.demo_count} must be at least 1")


def split_loader(data: str, resolution: int, demo_count: int | None, data_seed: int, skip_bad: bool):
    """class name -> its Split, loaded once and its notes printed then."""
    loaded: dict[str, Split] = {}

    def split_of(class_name: str) -> Split:
        if class_name not in loaded:
            loaded[class_name] = load_split(data, class_name, resolution, demo_count, data_seed, skip_bad)
            for note in loaded[class_name].notes:
                print(f"note: {note}")
        return loaded[class_name]
    return split_of


def check_demo_count(data: str, demo_count: int | None) -> None:
    if demo_count is not None and data != "demo":
        raise InputError(f"--demo-count applies to the demo set, not to --data {data}; leave it out")


def get_encoder(args, key: str, resolution: int, split_of) -> tuple[Encoder, dict]:
    """The encoder cached for `key` (data, resolution, seed), trained first when missing or asked for.

    split_of(class_name) -> Split gives the real slices (loaded only when the encoder must be trained)."""
    path = args.encoder or str(dataset.cache_folder() / "encoders" / f"encoder-{key}.pt")
    if os.path.exists(path) and not args.train_encoder:
        enc, info = load_encoder(path, args.device)
        if enc.resolution != resolution:
            raise InputError(f"encoder {path} is for {enc.resolution}x{enc.resolution} images, not "
                             f"{resolution}x{resolution}; pass another --encoder, or --train-encoder")
        if info.get("key") != key:
            print(f"note: encoder {path} was trained on other data ({info.get('data')})")
        print(f"encoder {path}: held-out accuracy {info['test_accuracy']:.3f}")
        return enc, {**info, "path": path, "sha256": file_sha256(path), "trained_now": False}
    why = "--train-encoder given" if args.train_encoder else "no encoder yet for this data"
    print(f"training the AD-vs-NC encoder ({why}; {args.encoder_steps} steps at {resolution}x{resolution})...")
    splits = {c: split_of(c) for c in CLASSES}
    start = time.perf_counter()
    enc, info = train_encoder({c: s.train.at_resolution(resolution) for c, s in splits.items()},
                              {c: s.test.at_resolution(resolution) for c, s in splits.items()},
                              args.seed, args.encoder_steps, args.device)
    info.update(key=key, data="; ".join(splits[c].train.source for c in CLASSES),
                seconds=round(time.perf_counter() - start, 1))
    save_encoder(enc, info, path)
    print(f"encoder saved to {path} ({info['seconds']} s); held-out accuracy {info['test_accuracy']:.3f} ("
          + ", ".join(f"{c} {a:.3f}" for c, a in info["class_accuracy"].items()) + ")")
    return enc, {**info, "path": path, "sha256": file_sha256(path), "trained_now": True}


def metrics_of(query: torch.Tensor, query_pred: torch.Tensor, query_feats: torch.Tensor,
               ref: torch.Tensor, ref_feats: torch.Tensor, bank_feats: torch.Tensor, bank_pix: torch.Tensor,
               test_feats: torch.Tensor, test_pix: torch.Tensor, encoder: Encoder, class_name: str,
               m: int, seed: int) -> tuple[dict, Audit]:
    """Every metric of one column: `query` (generated, or held-out reals) against the training reals."""
    dist_q, dist_f = query[:m], query_feats[:m]  # count-sensitive metrics: exactly m images in each column
    out = {"swd_x1e3": swd(ref, dist_q, seed)}
    out["frechet_distance"] = frechet_distance(encoder, ref, dist_q)
    out["kid"], out["kid_std"] = kernel_distance(encoder, ref, dist_q, seed)
    out["precision"], out["recall"] = knn_precision_recall(ref_feats, dist_f)
    out["class_fidelity"] = class_fidelity(query_pred, class_name)
    out["ms_ssim"] = ms_ssim_diversity(query, seed)
    audit_f = memorization_audit(query_feats, test_feats, bank_feats)
    audit_p = memorization_audit(pixels(query), test_pix, bank_pix)
    out.update(nn_distance_features_median=audit_f.distance.median().item(),
               nn_distance_pixels_median=audit_p.distance.median().item(),
               memorized_fraction_features=audit_f.fraction, memorized_fraction_pixels=audit_p.fraction,
               memorization_threshold_features=audit_f.threshold, memorization_threshold_pixels=audit_p.threshold)
    return out, audit_p


def torch_fidelity_available() -> bool:
    return importlib.util.find_spec("torch_fidelity") is not None


def inception_metric(path: str | None, device) -> FrechetInceptionDistance | str:
    """torchmetrics' standard FID (InceptionV3 pool3, 2048 features) with the weights at `path`, or why not."""
    if path is None:
        return "no --inception-weights given (the weights cannot be downloaded offline)"
    if not torch_fidelity_available():
        return ("torch-fidelity, which holds torchmetrics' InceptionV3, is not installed; "
                "`pip install torch-fidelity` to enable it")
    try:
        return FrechetInceptionDistance(feature=2048, reset_real_features=False,
                                        feature_extractor_weights_path=path).to(device)
    except Exception as e:  # not a state dict, or not InceptionV3's
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise InputError(f"--inception-weights {path} is not torch-fidelity's InceptionV3 weights ({first})") from None


def inception_fid(metric: FrechetInceptionDistance | str, ref: torch.Tensor, queries: dict[str, torch.Tensor],
                  device) -> dict:
    """Inception FID of each query against `ref`, grayscale repeated to 3 channels; or {"skipped": why}."""
    if isinstance(metric, str):
        return {"skipped": metric}
    for x in _batches(ref, device, 64):
        metric.update(x.expand(-1, 3, -1, -1), real=True)
    out = {}
    for name, q in queries.items():
        metric.reset()  # keeps the real features (reset_real_features=False)
        for x in _batches(q, device, 64):
            metric.update(x.expand(-1, 3, -1, -1), real=False)
        out[name] = metric.compute().item()
    return out


def print_table(r: dict) -> None:
    """The metrics, generated beside real test, with what to aim for."""
    gen, floor = r["metrics"]["generated"], r["metrics"]["real_test"]
    rows = [(f"SWD x1e3, {k}{'px' if k != 'mean' else ''}", gen["swd_x1e3"][k], floor["swd_x1e3"][k], "lower")
            for k in gen["swd_x1e3"]]
    rows += [("Frechet distance (encoder)", gen["frechet_distance"], floor["frechet_distance"], "lower"),
             ("KID (encoder)", gen["kid"], floor["kid"], "lower"),
             (f"precision (k={KNN_K})", gen["precision"], floor["precision"], "higher"),
             (f"recall (k={KNN_K})", gen["recall"], floor["recall"], "higher"),
             (f"class fidelity ({r['class']})", gen["class_fidelity"], floor["class_fidelity"], "higher"),
             ("MS-SSIM of random pairs", gen["ms_ssim"], floor["ms_ssim"], "near real; higher = less diverse"),
             ("nearest-train distance, features", gen["nn_distance_features_median"],
              floor["nn_distance_features_median"], "near real; lower = nearer copies"),
             ("nearest-train distance, pixels RMS", gen["nn_distance_pixels_median"],
              floor["nn_distance_pixels_median"], "near real; lower = nearer copies"),
             (f"nearer than {MEMO_PERCENTILE:g}% of test, features", gen["memorized_fraction_features"],
              floor["memorized_fraction_features"], "lower; above real = memorizing"),
             (f"nearer than {MEMO_PERCENTILE:g}% of test, pixels", gen["memorized_fraction_pixels"],
              floor["memorized_fraction_pixels"], "lower; above real = memorizing")]
    inc = r["inception_fid"]
    inception = ("skipped", "", inc["skipped"]) if "skipped" in inc else \
        (f"{inc['generated']:.4f}", f"{inc['real_test']:.4f}", "lower")
    print(f"\n{r['class']} at {r['resolution']}x{r['resolution']}: {r['n_compared']} generated and {r['n_compared']} "
          f"held-out real slices, each against {r['n_reference']} training slices")
    print(f"{'metric':<37} {'generated':>10} {'real test':>10}  aim")
    for name, a, b, aim in rows:
        print(f"{name:<37} {a:>10.4f} {b:>10.4f}  {aim}")
    print(f"{'Inception FID':<37} {inception[0]:>10} {inception[1]:>10}  {inception[2]}")


def evaluate(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    check_args(args)
    if args.ckpt is None:  # --train-encoder alone
        res, data = args.resolution or 64, args.data or "demo"
        if res < MIN_RES or res & (res - 1):
            raise InputError(f"--resolution {res} must be a power of two >= {MIN_RES}")
        check_demo_count(data, args.demo_count)
        get_encoder(args, f"{data_key(data, args.demo_count, 0)}-r{res}-s{args.seed}", res,
                    split_loader(data, res, args.demo_count, 0, args.skip_bad))
        return
    inception = inception_metric(args.inception_weights, args.device)  # a bad weights file stops us here
    state = modules.load_checkpoint(args.ckpt)
    g = modules.load_generator(args.ckpt, args.device)
    cls, res, tc = g.class_name, g.resolution, state["train_config"]
    if res < MIN_RES:
        raise InputError(f"{args.ckpt} generates {res}x{res} images; evaluation needs {MIN_RES}x{MIN_RES} or more "
                         "(resume its training)")
    data = args.data or tc["data"]
    check_demo_count(data, args.demo_count)
    demo_count = args.demo_count or tc.get("demo_count")
    if data != tc["data"]:
        print(f"note: {args.ckpt} was trained on {tc['data']}; its training slices are taken from {data} here")
    elif data == "demo" and demo_count != tc.get("demo_count"):
        print(f"note: {args.ckpt} was trained on {tc.get('demo_count') or dataset.DEMO_COUNT['train']} demo slices "
              f"per class, here --demo-count {demo_count}: the memorization audit does not see its training set")
    out = predict.writable_folder(args.out or os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), "eval"))
    json_path, png_path = os.path.join(out, "metrics.json"), os.path.join(out, "memorization_pairs.png")
    if os.path.exists(json_path):
        print(f"note: {json_path} exists and will be overwritten (a re-evaluation)")

    # Reals decoded at the resolution train.py loaded (the model's final one), area-downsampled like its reals.
    split_of = split_loader(data, state["model_config"]["resolution"], demo_count, tc["seed"], args.skip_bad)
    split = split_of(cls)
    encoder, enc_info = get_encoder(args, f"{data_key(data, demo_count, tc['seed'])}-r{res}-s{args.seed}", res,
                                    split_of)
    train_all, test_all = split.train.at_resolution(res), split.test.at_resolution(res)

    t = time.perf_counter()
    fake = generate(g, args.n, args.seed)
    print(f"{cls} generator {args.ckpt}: {args.n} images at {res}x{res} in {time.perf_counter() - t:.1f} s")
    m = min(args.n, len(test_all), len(train_all))  # images per side in SWD, FD, KID, precision/recall
    gen = torch.Generator().manual_seed(args.seed)
    pick = torch.randperm(len(train_all), generator=gen)[:m]
    ref, test = train_all[pick], test_all[torch.randperm(len(test_all), generator=gen)[:m]]
    print(f"reference: {len(ref)} of {len(train_all)} training slices; floor: {len(test)} of {len(test_all)} "
          f"held-out slices; data: {split.train.source}")
    if m < args.n:
        print(f"note: only {len(test_all)} held-out and {len(train_all)} training slices, so SWD, Frechet distance, "
              f"KID and precision/recall use the first {m} generated images (the other metrics use all {args.n})")

    bank = with_mirrors(train_all)  # the audit's training set: every training slice and its mirror image
    bank_feats, _ = encoder_outputs(encoder, bank)
    test_feats, test_pred = encoder_outputs(encoder, test)
    fake_feats, fake_pred = encoder_outputs(encoder, fake)
    common = dict(ref=ref, ref_feats=bank_feats[pick], bank_feats=bank_feats, bank_pix=pixels(bank),
                  test_feats=test_feats, test_pix=pixels(test), encoder=encoder, class_name=cls, m=m, seed=args.seed)
    print("computing the metrics of the generated images, then of the held-out reals...")
    gen_metrics, audit = metrics_of(fake, fake_pred, fake_feats, **common)
    floor_metrics, _ = metrics_of(test, test_pred, test_feats, **common)

    closest = audit.distance.argsort()[:MEMO_PAIRS_SHOWN]
    modules.save_image_grid(torch.cat([fake[closest], bank[audit.index[closest]]]).float() / 127.5 - 1, png_path,
                            nrow=len(closest))
    report = {
        "checkpoint": os.path.abspath(args.ckpt), "class": cls, "images_seen": int(state["images_seen"]),
        "resolution": res, "seed": args.seed, "data": data, "data_source": split.train.source,
        "demo_count": (demo_count or dataset.DEMO_COUNT["train"]) if data == "demo" else None,
        "data_seed": tc["seed"],
        "data_notes": split.notes, "n_generated": args.n, "n_compared": m, "n_reference": len(ref),
        "n_real_train": len(train_all), "n_real_test": len(test_all),
        "encoder": {k: enc_info[k] for k in ("path", "sha256", "test_accuracy", "class_accuracy", "n_train",
                                             "n_test", "steps", "seed", "data", "trained_now")},
        "settings": {"swd": {"patch": SWD_PATCH, "patches_per_image": SWD_PATCHES, "repeats": SWD_REPEATS,
                             "directions_per_repeat": SWD_DIRS, "min_resolution": MIN_RES},
                     "kid": {"subsets": KID_SUBSETS, "subset_size": min(KID_SUBSET_SIZE, m)},
                     "knn_k": KNN_K, "ms_ssim": {**msssim_settings(res), "pairs": MSSSIM_PAIRS},
                     "memorization": {"percentile": MEMO_PERCENTILE, "bank": "training slices and their mirrors",
                                      "pixel_distance": f"RMS difference of intensities in [0, 1] at "
                                                        f"{min(res, PIXEL_RES)}x{min(res, PIXEL_RES)}"}},
        "columns": {"generated": "generated images vs training slices",
                    "real_test": "held-out real slices (other subjects) vs the same training slices"},
        "metrics": {"generated": gen_metrics, "real_test": floor_metrics},
        "inception_fid": inception_fid(inception, ref, {"generated": fake[:m], "real_test": test}, args.device),
        "memorization_png": png_path,
    }
    report["elapsed_seconds"] = round(time.perf_counter() - start, 1)
    print_table(report)
    tmp = json_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, json_path)
    print(f"\nwrote {json_path} and {png_path} (top row: the {len(closest)} generated images nearest to a training "
          f"slice; below: that slice) in {report['elapsed_seconds']} s")


def main(argv: list[str] | None = None) -> None:
    predict.run_or_exit(evaluate, parse_args(argv), errors=(dataset.DataError,))


if __name__ == "__main__":
    main()
