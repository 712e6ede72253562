"""How good are a checkpoint's images? Offline metrics against real slices, each beside its real-vs-real floor.

    python evaluate.py --ckpt runs/AD/checkpoint.pt        # the run's own data (demo), 2000 samples -> runs/AD/eval/
    python evaluate.py --ckpt runs/NC/checkpoint.pt --data /data/ADNI --n 5000 --out outputs/eval_NC
    python evaluate.py --ckpt runs/AD/checkpoint.pt runs/NC/checkpoint.pt   # both, and AD vs NC -> outputs/eval/
    python evaluate.py --images my_slices/ --class AD      # another generator's PNGs (or a .pt uint8 tensor)
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
- Biomarkers of atrophy, per image (dataset.csf_fraction, dataset.ventricle_fraction): mean and SD of the
  generated images, the real training and the held-out slices, and the Wasserstein-1 distance of their
  distributions to the training one.
- Inception FID only with --inception-weights (torch-fidelity's InceptionV3 file) and torch-fidelity installed.
Generated image k has the latent z of seed --seed + k (predict.py's seeds) and random noise, as in training.
The output folder (--out, default <checkpoint folder>/eval) gets metrics.json and the PNG.

With an AD and an NC checkpoint, each class goes to <out>/AD and <out>/NC (default out: outputs/eval), and
<out>/class_difference.json compares the classes: AD - NC of each biomarker's mean, with a bootstrap 95%
interval and Cohen's d, in the generated images and in the real training slices; the difference counts as
reproduced when the generated one has the real one's sign and at least half its size.
--images evaluates images made elsewhere as the samples of --class, against --data (default demo).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance  # not re-exported without torch-fidelity

import core
import dataset
import metrics
import modules
from metrics import (BATCH, KID_SUBSET_SIZE, KID_SUBSETS, KNN_K, MEMO_PERCENTILE, MIN_RES,  # noqa: F401 (re-exported)
                     MSSSIM_PAIRS, PIXEL_RES, SWD_DIRS, SWD_PATCH, SWD_PATCHES, SWD_REPEATS, Audit, _batches,
                     _device, frechet_distance, kernel_distance, knn_precision_recall, laplacian_pyramid,
                     memorization_audit, ms_ssim_diversity, msssim_settings, nearest, pixels, pyr_up,
                     sliced_wasserstein, swd, with_mirrors)
from core import CLASSES, file_sha256  # noqa: F401 (re-exported)
from core import UserError as InputError
from core import write_json_atomic as write_json  # noqa: F401 (re-exported)
from sampling import generate  # noqa: F401 (re-exported)

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


# ----------------------------------------------------------------------------- encoder metrics

def class_fidelity(predicted: torch.Tensor, class_name: str) -> float:
    """Fraction of predicted class indices (encoder outputs) that are `class_name`."""
    return predicted.eq(CLASSES.index(class_name)).double().mean().item()



# ----------------------------------------------------------------------------- the script

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", nargs="+", metavar="CKPT",
                   help="checkpoint to evaluate (its class, resolution and training data come from it); or two, "
                        "one AD and one NC, to also compare the classes")
    p.add_argument("--images", metavar="PATH",
                   help="evaluate these images instead of a checkpoint: a folder of PNG/JPEG slices (square, one "
                        "power-of-two size >= 16) or a .pt file of a uint8 tensor (N, 1, R, R); needs --class")
    p.add_argument("--class", dest="class_name", metavar="AD|NC", help="with --images: the class the images are of")
    p.add_argument("--data", help="'demo' or an ADNI/NIfTI folder (default: the checkpoint's training data, else demo)")
    p.add_argument("--n", type=int, help="generated images (default 2000); with --images: the first N (default all)")
    p.add_argument("--out", help="folder for metrics.json and memorization_pairs.png (default <ckpt folder>/eval; "
                                 "two checkpoints: outputs/eval, with AD/ and NC/ in it; "
                                 "--images: outputs/eval_images)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the latents (seeds SEED..SEED+n-1), subsets, patches, projections, bootstrap and "
                        "the encoder")
    p.add_argument("--encoder", help="encoder checkpoint to use, or to create if missing "
                                     "(default: one per data set, resolution and seed in the cache folder)")
    p.add_argument("--train-encoder", action="store_true",
                   help="(re)train the encoder and overwrite its file; alone (no --ckpt/--images) only that")
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
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse unusable flags before any slow work."""
    ckpts = args.ckpt or []
    if args.images is not None and ckpts:
        raise InputError("pass --ckpt or --images, not both; evaluate a checkpoint and an image set one at a time")
    if not ckpts and args.images is None and not args.train_encoder:
        raise InputError("pass --ckpt CHECKPOINT (or --images PATH --class AD|NC) to evaluate, "
                         "or --train-encoder to only train the encoder")
    if len(ckpts) > 2:
        raise InputError(f"--ckpt got {len(ckpts)} checkpoints; pass one, or two: one AD and one NC")
    for ckpt in ckpts:
        if not os.path.isfile(ckpt):
            raise InputError(f"checkpoint {ckpt} does not exist; pass the checkpoint.pt of a train.py run")
    if args.images is not None:
        if args.class_name is None:
            raise InputError(f"--images {args.images} needs --class AD or --class NC: the class the images are of")
        if not os.path.exists(args.images):
            raise InputError(f"--images {args.images} does not exist; pass a folder of PNG/JPEG slices or a .pt file "
                             "holding a uint8 tensor (N, 1, R, R)")
    if args.class_name is not None:
        if args.images is None:
            raise InputError("--class applies to --images; a checkpoint knows its class, so leave --class out")
        if args.class_name not in CLASSES:
            raise InputError(f"--class {args.class_name} is not a class; pass --class AD or --class NC")
    if args.inception_weights is not None and not os.path.isfile(args.inception_weights):
        raise InputError(f"--inception-weights {args.inception_weights} does not exist; pass torch-fidelity's "
                         "weights-inception-2015-12-05-6726825d.pth, or leave the flag out")
    if args.n is not None and args.n < 16:
        raise InputError(f"--n {args.n} is too few; pass --n 16 or more (2000 for figures worth reporting)")
    if args.encoder_steps < 1:
        raise InputError("--encoder-steps must be at least 1")
    if (ckpts or args.images is not None) and args.resolution is not None:
        raise InputError("--resolution applies to --train-encoder alone; the checkpoint or the images fix it")
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
    path = args.encoder or str(core.cache_folder() / "encoders" / f"encoder-{key}.pt")
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
        raise InputError(f"--inception-weights {path} is not torch-fidelity's InceptionV3 weights "
                         f"({core.first_line(e)})") from None


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


# ----------------------------------------------------------------------------- what is evaluated

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Candidate:
    """One class's images to evaluate: a checkpoint's generator, or images made elsewhere (--images)."""
    class_name: str
    resolution: int          # of the images evaluated
    load_resolution: int     # real slices are decoded at this size, then area-downsampled to `resolution`
    data: str
    demo_count: int | None   # None: the demo set's default
    data_seed: int
    checkpoint: str | None = None
    images_path: str | None = None
    images_seen: int | None = None
    generator: modules.Generator | None = None
    images: torch.Tensor | None = None  # uint8 (N, 1, R, R), for --images

    @property
    def data_key(self) -> str:
        return data_key(self.data, self.demo_count, self.data_seed)


def checkpoint_candidate(path: str, args: argparse.Namespace) -> Candidate:
    """The generator of a checkpoint, with the real data it is compared with (its own, unless --data)."""
    state = modules.load_checkpoint(path)
    g = modules.load_generator(path, args.device)
    cls, res, tc = g.class_name, g.resolution, state["train_config"]
    if res < MIN_RES:
        raise InputError(f"{path} generates {res}x{res} images; evaluation needs {MIN_RES}x{MIN_RES} or more "
                         "(resume its training)")
    data = args.data or tc["data"]
    check_demo_count(data, args.demo_count)
    demo_count = args.demo_count or tc.get("demo_count")
    if data != tc["data"]:
        print(f"note: {path} was trained on {tc['data']}; its training slices are taken from {data} here")
    elif data == "demo" and demo_count != tc.get("demo_count"):
        print(f"note: {path} was trained on {tc.get('demo_count') or dataset.DEMO_COUNT['train']} demo slices "
              f"per class, here --demo-count {demo_count}: the memorization audit does not see its training set")
    data_seed = tc["seed"] if tc.get("data_seed") is None else tc["data_seed"]  # the demo set it trained on
    # Reals decoded at the resolution train.py loaded (the model's final one), area-downsampled like its reals.
    return Candidate(cls, res, state["model_config"]["resolution"], data, demo_count, data_seed, checkpoint=path,
                     images_seen=int(state["images_seen"]), generator=g)


def _bad_images(path, problem: str) -> InputError:
    return InputError(f"--images {path}: {problem}")


def _check_size(path, h: int, w: int) -> int:
    if h != w:
        raise _bad_images(path, f"{w}x{h} is not square; pass square slices (pad or crop them) of one size")
    if h < MIN_RES or h & (h - 1):
        raise _bad_images(path, f"{h}x{h} is not a power of two >= {MIN_RES}; resize the images to e.g. 64x64")
    return h


def read_image_folder(folder: Path) -> torch.Tensor:
    """uint8 (N, 1, R, R) from the PNG/JPEG files of `folder` (sorted by name; grayscale, or converted to it)."""
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise _bad_images(folder, "no .png, .jpg or .jpeg files in this folder; pass the folder holding the images")
    images, first = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                img = np.asarray(im.convert("L"))
        except Exception as e:  # truncated, corrupt, or not an image
            raise _bad_images(f, f"not a readable image ({type(e).__name__}); remove or replace it") from None
        res = _check_size(f, *img.shape)
        if first is None:
            first = (f, res)
        elif res != first[1]:
            raise _bad_images(f, f"{res}x{res}, but {first[0].name} is {first[1]}x{first[1]}; "
                                 "pass images of one size")
        images.append(img)
    return torch.from_numpy(np.stack(images))[:, None]


def read_image_tensor(path: Path) -> torch.Tensor:
    """uint8 (N, 1, R, R) from a tensor file of shape (N, 1, R, R) or (N, R, R)."""
    hint = "save a uint8 tensor (N, 1, R, R) with values 0..255 with torch.save"
    try:
        x = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or pickled objects other than tensors
        raise _bad_images(path, f"not a readable tensor file ({type(e).__name__}); {hint}") from None
    if not isinstance(x, torch.Tensor):
        raise _bad_images(path, f"holds a {type(x).__name__}, not a tensor; {hint}")
    if x.dtype != torch.uint8:
        raise _bad_images(path, f"holds a {x.dtype} tensor, not uint8; convert it, e.g. from [-1, 1] with "
                                "((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise _bad_images(path, f"holds a tensor of shape {tuple(x.shape)}; pass (N, 1, R, R) or (N, R, R)")
    _check_size(path, *x.shape[-2:])
    return x.contiguous()


def images_candidate(args: argparse.Namespace) -> Candidate:
    """Images made elsewhere (--images), compared with the real slices of --class from --data (default demo)."""
    path = Path(args.images)
    if path.is_dir():
        images = read_image_folder(path)
    elif path.suffix.lower() == ".pt":
        images = read_image_tensor(path)
    else:
        raise _bad_images(path, "neither a folder nor a .pt file; pass a folder of PNG/JPEG slices or a .pt file")
    n = args.n or len(images)
    if len(images) < max(n, 16):
        raise _bad_images(path, f"{len(images)} images, " + (f"fewer than --n {n}; leave --n out to use all"
                                                             if args.n else "too few; pass 16 or more (2000 for "
                                                                            "figures worth reporting)"))
    data = args.data or "demo"
    check_demo_count(data, args.demo_count)
    res = images.shape[-1]
    return Candidate(args.class_name, res, res, data, args.demo_count, 0, images_path=str(path.resolve()),
                     images=images[:n])


def candidates_of(args: argparse.Namespace) -> list[Candidate]:
    """What to evaluate, AD before NC; two checkpoints must be one of each class, at one resolution, on one data set."""
    if args.images is not None:
        return [images_candidate(args)]
    found = sorted((checkpoint_candidate(p, args) for p in args.ckpt), key=lambda c: CLASSES.index(c.class_name))
    if len(found) == 2:
        a, b = found
        if a.class_name == b.class_name:
            raise InputError(f"--ckpt {a.checkpoint} and {b.checkpoint} are both {a.class_name} checkpoints; "
                             "pass one AD and one NC checkpoint")
        for what, x, y in (("generates", f"{a.resolution}x{a.resolution}", f"{b.resolution}x{b.resolution}"),
                           ("was built for", a.load_resolution, b.load_resolution),
                           ("is compared with the data", a.data_key, b.data_key)):
            if x != y:
                raise InputError(f"{a.checkpoint} {what} {x}, {b.checkpoint} {y}; the class comparison needs them "
                                 "alike: evaluate them one at a time (or pass --data/--demo-count)")
    return found


def output_folders(args: argparse.Namespace, candidates: list[Candidate]) -> tuple[str, list[str]]:
    """The output folder, and one per candidate (the same one unless there are two classes)."""
    if args.images is not None:
        base = args.out or os.path.join("outputs", "eval_images")
    elif len(candidates) == 1:
        base = args.out or os.path.join(os.path.dirname(os.path.abspath(candidates[0].checkpoint)), "eval")
    else:
        base = args.out or os.path.join("outputs", "eval")
        return core.writable_folder(base), [core.writable_folder(os.path.join(base, c.class_name))
                                               for c in candidates]
    return core.writable_folder(base), [core.writable_folder(base)]


# ----------------------------------------------------------------------------- biomarkers and the class difference

BIOMARKERS = {"csf_fraction": dataset.csf_fraction, "ventricle_fraction": dataset.ventricle_fraction}


def biomarker_values(**image_sets: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
    """biomarker name -> image set name -> its per-image values."""
    return {name: {k: f(x).double().numpy() for k, x in image_sets.items()} for name, f in BIOMARKERS.items()}


def class_difference(values: dict[str, dict], fidelity: dict[str, float], seed: int) -> dict:
    """AD - NC of each biomarker's mean, in the generated images and in the real training slices, and whether the
    generators reproduce the real difference. values: class -> biomarker_values(generated=..., real_train=...);
    fidelity: class -> the encoder's class fidelity of that class's generated images."""
    out = {}
    for name in BIOMARKERS:
        diff = {column: metrics.group_difference(values["AD"][name][key], values["NC"][name][key], seed)
                for column, key in (("generated", "generated"), ("real", "real_train"))}
        out[name] = {**diff, **metrics.reproduction(diff["generated"]["difference"], diff["real"]["difference"])}
    out["class_fidelity"] = {**fidelity, "mean": sum(fidelity[c] for c in CLASSES) / len(CLASSES)}
    return out


def _interval(d: dict) -> str:
    return f"{d['difference']:+.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"


def verdict(name: str, r: dict) -> str:
    """One biomarker's class comparison in words."""
    gen, real = r["generated"], r["real"]
    head = f"{name}: generated AD-NC {_interval(gen)} vs real {real['difference']:+.3f}"
    if r["ratio"] is None:
        return f"{head}: the real classes do not differ, so there is nothing to reproduce"
    sign = "same sign" if r["ratio"] > 0 else "opposite sign" if r["ratio"] < 0 else "no generated difference"
    size = f", {r['ratio']:.0%} of the real size" if r["ratio"] > 0 else ""
    zero = " (the generated interval includes 0)" if gen["ci95"][0] <= 0 <= gen["ci95"][1] else ""
    return f"{head}: {sign}{size}: {'reproduced' if r['reproduced'] else 'not reproduced'}{zero}"


def print_class_difference(r: dict, n: dict[str, int], n_real: dict[str, int]) -> None:
    print(f"\nAD - NC difference of the mean, bootstrap 95% interval and Cohen's d: {n['AD']} / {n['NC']} generated "
          f"images against {n_real['AD']} / {n_real['NC']} real training slices")
    print(f"{'biomarker':<19} {'generated AD - NC':<36} {'real AD - NC':<36} {'ratio':>6}  reproduced")
    for name in BIOMARKERS:
        b = r[name]
        cells = [f"{d['difference']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] d {d['cohens_d']:+.2f}"
                 for d in (b["generated"], b["real"])]
        ratio = "n/a" if b["ratio"] is None else f"{b['ratio']:.0%}"
        print(f"{name:<19} {cells[0]:<36} {cells[1]:<36} {ratio:>6}  {'yes' if b['reproduced'] else 'no'}")
    f = r["class_fidelity"]
    print(f"class fidelity (encoder): AD {f['AD']:.3f}, NC {f['NC']:.3f}, mean {f['mean']:.3f}\n")
    for name in BIOMARKERS:
        print(verdict(name, r[name]))
    yes = [name for name in BIOMARKERS if r[name]["reproduced"]]
    no = [name for name in BIOMARKERS if not r[name]["reproduced"]]
    if not no:
        print("The generators reproduce the real AD-NC difference in every biomarker.")
    elif not yes:
        print("The generators do not reproduce the real AD-NC difference in any biomarker.")
    else:
        print(f"The generators reproduce the real AD-NC difference in {', '.join(yes)}, not in {', '.join(no)}.")


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
    what = "generated" if r["checkpoint"] else "given"
    print(f"\n{r['class']} at {r['resolution']}x{r['resolution']}: {r['n_compared']} {what} and {r['n_compared']} "
          f"held-out real slices, each against {r['n_reference']} training slices")
    print(f"{'metric':<37} {'generated':>10} {'real test':>10}  aim")
    for name, a, b, aim in rows:
        print(f"{name:<37} {a:>10.4f} {b:>10.4f}  {aim}")
    for name, b in r["biomarkers"].items():
        train = b["real_train"]["mean"]
        floor_error = metrics.relative_difference(b["real_test"]["mean"], train)
        errors = ["n/a" if e is None else f"{e:+.1%}" for e in (b["relative_error"], floor_error)]
        print(f"{name + ', mean':<37} {b['generated']['mean']:>10.4f} {b['real_test']['mean']:>10.4f}  "
              f"near train {train:.4f}")
        print(f"{name + ', mean vs train':<37} {errors[0]:>10} {errors[1]:>10}  near 0")
        print(f"{name + ', W1 to train':<37} {b['wasserstein']:>10.4f} {b['wasserstein_floor']:>10.4f}  lower")
    print(f"{'Inception FID':<37} {inception[0]:>10} {inception[1]:>10}  {inception[2]}")


def evaluate_one(c: Candidate, args: argparse.Namespace, out: str, split: Split, encoder: Encoder, enc_info: dict,
                 inception: FrechetInceptionDistance | str) -> tuple[dict, dict]:
    """Every metric of one candidate; writes metrics.json and memorization_pairs.png to `out`.

    Returns the report and the biomarker values of the generated images and of the real slices."""
    start = time.perf_counter()
    json_path, png_path = os.path.join(out, "metrics.json"), os.path.join(out, "memorization_pairs.png")
    if os.path.exists(json_path):
        print(f"note: {json_path} exists and will be overwritten (a re-evaluation)")
    cls, res = c.class_name, c.resolution
    train_all, test_all = split.train.at_resolution(res), split.test.at_resolution(res)

    if c.generator is not None:
        t = time.perf_counter()
        fake = generate(c.generator, args.n or 2000, args.seed)
        print(f"{cls} generator {c.checkpoint}: {len(fake)} images at {res}x{res} in {time.perf_counter() - t:.1f} s")
    else:
        fake = c.images
        print(f"{cls} images {c.images_path}: {len(fake)} images at {res}x{res}")
    n = len(fake)
    m = min(n, len(test_all), len(train_all))  # images per side in SWD, FD, KID, precision/recall
    gen = torch.Generator().manual_seed(args.seed)
    pick = torch.randperm(len(train_all), generator=gen)[:m]
    ref, test = train_all[pick], test_all[torch.randperm(len(test_all), generator=gen)[:m]]
    print(f"reference: {len(ref)} of {len(train_all)} training slices; floor: {len(test)} of {len(test_all)} "
          f"held-out slices; data: {split.train.source}")
    if m < n:
        print(f"note: only {len(test_all)} held-out and {len(train_all)} training slices, so SWD, Frechet distance, "
              f"KID and precision/recall use the first {m} of the {n} images (the other metrics use all)")

    bank = with_mirrors(train_all)  # the audit's training set: every training slice and its mirror image
    bank_feats, _ = encoder_outputs(encoder, bank)
    test_feats, test_pred = encoder_outputs(encoder, test)
    fake_feats, fake_pred = encoder_outputs(encoder, fake)
    common = dict(ref=ref, ref_feats=bank_feats[pick], bank_feats=bank_feats, bank_pix=pixels(bank),
                  test_feats=test_feats, test_pix=pixels(test), encoder=encoder, class_name=cls, m=m, seed=args.seed)
    print("computing the metrics of the evaluated images, then of the held-out reals...")
    gen_metrics, audit = metrics_of(fake, fake_pred, fake_feats, **common)
    floor_metrics, _ = metrics_of(test, test_pred, test_feats, **common)
    values = biomarker_values(generated=fake, real_train=train_all, real_test=test_all)

    closest = audit.distance.argsort()[:MEMO_PAIRS_SHOWN]
    modules.save_image_grid(torch.cat([fake[closest], bank[audit.index[closest]]]).float() / 127.5 - 1, png_path,
                            nrow=len(closest))
    report = {
        "checkpoint": os.path.abspath(c.checkpoint) if c.checkpoint else None, "images": c.images_path,
        "class": cls, "images_seen": c.images_seen,
        "resolution": res, "seed": args.seed, "data": c.data, "data_source": split.train.source,
        "demo_count": (c.demo_count or dataset.DEMO_COUNT["train"]) if c.data == "demo" else None,
        "data_seed": c.data_seed,
        "data_notes": split.notes, "n_generated": n, "n_compared": m, "n_reference": len(ref),
        "n_real_train": len(train_all), "n_real_test": len(test_all),
        "encoder": {k: enc_info[k] for k in ("path", "sha256", "test_accuracy", "class_accuracy", "n_train",
                                             "n_test", "steps", "seed", "data", "trained_now")},
        "settings": {"swd": {"patch": SWD_PATCH, "patches_per_image": SWD_PATCHES, "repeats": SWD_REPEATS,
                             "directions_per_repeat": SWD_DIRS, "min_resolution": MIN_RES},
                     "kid": {"subsets": KID_SUBSETS, "subset_size": min(KID_SUBSET_SIZE, m)},
                     "knn_k": KNN_K, "ms_ssim": {**msssim_settings(res), "pairs": MSSSIM_PAIRS},
                     "memorization": {"percentile": MEMO_PERCENTILE, "bank": "training slices and their mirrors",
                                      "pixel_distance": f"RMS difference of intensities in [0, 1] at "
                                                        f"{min(res, PIXEL_RES)}x{min(res, PIXEL_RES)}"},
                     "biomarkers": "dataset.csf_fraction and dataset.ventricle_fraction of every evaluated image and "
                                   "every real train and test slice; wasserstein: 1-D Wasserstein-1 distance to the "
                                   "real train values"},
        "columns": {"generated": "evaluated images vs training slices",
                    "real_test": "held-out real slices (other subjects) vs the same training slices"},
        "metrics": {"generated": gen_metrics, "real_test": floor_metrics},
        "biomarkers": {name: metrics.biomarker_comparison(v["generated"], v["real_train"], v["real_test"])
                       for name, v in values.items()},
        "inception_fid": inception_fid(inception, ref, {"generated": fake[:m], "real_test": test}, args.device),
        "memorization_png": png_path,
    }
    report["elapsed_seconds"] = round(time.perf_counter() - start, 1)
    print_table(report)
    write_json(report, json_path)
    print(f"\nwrote {json_path} and {png_path} (top row: the {len(closest)} evaluated images nearest to a training "
          f"slice; below: that slice) in {report['elapsed_seconds']} s")
    return report, values


def evaluate(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    args = argparse.Namespace(**{**vars(args), "device": core.choose_device(args.device)})
    check_args(args)
    if not args.ckpt and args.images is None:  # --train-encoder alone
        res, data = args.resolution or 64, args.data or "demo"
        if res < MIN_RES or res & (res - 1):
            raise InputError(f"--resolution {res} must be a power of two >= {MIN_RES}")
        check_demo_count(data, args.demo_count)
        get_encoder(args, f"{data_key(data, args.demo_count, 0)}-r{res}-s{args.seed}", res,
                    split_loader(data, res, args.demo_count, 0, args.skip_bad))
        return
    inception = inception_metric(args.inception_weights, args.device)  # a bad weights file stops us here
    candidates = candidates_of(args)
    base, outs = output_folders(args, candidates)
    first = candidates[0]  # two candidates share resolution and data (candidates_of checks)
    split_of = split_loader(first.data, first.load_resolution, first.demo_count, first.data_seed, args.skip_bad)
    splits = {c.class_name: split_of(c.class_name) for c in candidates}
    encoder, enc_info = get_encoder(args, f"{first.data_key}-r{first.resolution}-s{args.seed}", first.resolution,
                                    split_of)
    results = {}
    for i, (c, out) in enumerate(zip(candidates, outs)):
        if i:  # its real features would otherwise stay from the first class
            inception = inception_metric(args.inception_weights, args.device)
        results[c.class_name] = evaluate_one(c, args, out, splits[c.class_name], encoder, enc_info, inception)
    if len(candidates) < 2:
        return
    reports = {cls: r for cls, (r, _) in results.items()}
    diff = class_difference({cls: v for cls, (_, v) in results.items()},
                            {cls: r["metrics"]["generated"]["class_fidelity"] for cls, r in reports.items()}, args.seed)
    path = os.path.join(base, "class_difference.json")
    write_json(diff, path)
    print(f"\nwrote {path} ({time.perf_counter() - start:.1f} s in all)")
    print_class_difference(diff, {cls: r["n_generated"] for cls, r in reports.items()},
                           {cls: r["n_real_train"] for cls, r in reports.items()})


def main(argv: list[str] | None = None) -> None:
    core.main(evaluate, parse_args(argv), errors=(modules.CheckpointError,))


if __name__ == "__main__":
    main()
