"""The feature networks of evaluate.py's metrics: a small AD-vs-NC encoder trained here on the real training
slices (cached per data set, resolution and seed), and, when its weights are given, torch-fidelity's InceptionV3.

The encoder gives the feature space of the Frechet distance, KID, k-NN precision/recall and the memorization
audit, and its AD/NC prediction gives class fidelity. Its checkpoint is plain types (weights_only=True).
"""
from __future__ import annotations

import importlib.util
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance  # not re-exported without torch-fidelity

import core
import dataset
import metrics
import modules
from core import CLASSES, UserError
from metrics import BATCH, _batches, _device

ENCODER_FORMAT = "brain-stylegan-encoder"
ENCODER_VERSION = 2  # 2: trained with blur augmentation (version 1 read sharpness as AD)


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


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each float image of x (N, 1, R, R) blurred by its own Gaussian of sigma[i] pixels (0: unchanged),
    the kernel cut at 3 of the largest sigma, borders mirrored."""
    n, r = x.shape[0], max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x).clamp_min(1e-6)[:, None]
    k1 = torch.exp(-0.5 * (offsets[None] / s) ** 2)
    k1 = torch.where(sigma.to(x.device)[:, None] > 0, k1, (offsets[None] == 0).to(x))  # sigma 0: the identity
    k1 = k1 / k1.sum(1, keepdim=True)
    kernel = (k1[:, :, None] * k1[:, None, :])[:, None]  # (N, 1, 2r+1, 2r+1), separable
    padded = F.pad(x.reshape(1, n, *x.shape[-2:]), (r, r, r, r), mode="reflect")
    return F.conv2d(padded, kernel, groups=n).reshape(x.shape)


def blurred_uint8(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """uint8 slices (N, 1, R, R), each blurred by a Gaussian of `sigma` px (rounded back to uint8)."""
    x = gaussian_blur(images.float(), torch.full((len(images),), float(sigma)))
    return x.round().clamp(0, 255).to(torch.uint8)


def blur_sigma(resolution: int) -> float:
    """The largest blur of the encoder's augmentation, in pixels: 1 px at 64x64 and below, scaled above."""
    return max(1.0, resolution / 64)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Float slices (N, 1, R, R) in [-1, 1]: half of them blurred by a Gaussian of 0 to `blur_sigma(R)` px,
    then each shifted by up to R/16 px (black fill) and its intensities scaled by 0.9-1.1. The encoder then
    learns anatomy rather than the training slices themselves, so held-out slices sit as close to the
    training slices in its features as new training slices would; and it cannot use sharpness as a cue for
    the class: without the blur, a Gaussian of 0.5 px turned every held-out NC slice of the demo set into "AD"
    (docs/evaluation.md), so class fidelity measured how sharp a generator's samples were, not their anatomy."""
    n, _, h, w = x.shape
    sigma = torch.rand(n, generator=generator) * blur_sigma(h) * (torch.rand(n, generator=generator) < 0.5)
    x = gaussian_blur(x, sigma.to(x.device))
    pad = max(1, h // 16)
    dy, dx = (torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=generator).to(x.device) for _ in range(2))
    rows, cols = dy + torch.arange(h, device=x.device)[:, None], dx + torch.arange(w, device=x.device)[None, :]
    x = F.pad(x[:, 0], (pad, pad, pad, pad), value=-1.0)[torch.arange(n, device=x.device)[:, None, None], rows, cols]
    scale = 0.9 + 0.2 * torch.rand(n, 1, 1, generator=generator).to(x.device)
    return ((x + 1) * scale - 1).clamp(-1, 1)[:, None]


def train_encoder(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], seed: int, steps: int = 1000,
                  device: str | torch.device = "cpu", batch: int = 64, lr: float = 3e-3) -> tuple[Encoder, dict]:
    """Train an Encoder for `steps` batches of uint8 slices per class (random flips, blur, shifts and contrast),
    then score it on `test`, as given and blurred by half the largest training blur.

    Returns the encoder (eval mode, no grad) and its report: test accuracy overall and per class, the per-class
    accuracy on the blurred test slices, counts."""
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
    sigma = blur_sigma(res) / 2  # the held-out slices blurred: an encoder keyed to sharpness fails here
    blurred_acc = {c: encoder_outputs(enc, blurred_uint8(test[c], sigma))[1].eq(i).float().mean().item()
                   for i, c in enumerate(CLASSES)}
    n_test = {c: len(test[c]) for c in CLASSES}
    report = {"test_accuracy": sum(class_acc[c] * n_test[c] for c in CLASSES) / sum(n_test.values()),
              "class_accuracy": class_acc, "blurred_sigma": sigma, "blurred_class_accuracy": blurred_acc,
              "n_train": {c: len(train[c]) for c in CLASSES}, "n_test": n_test,
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


def encoder_path(given: str | None, key: str) -> str:
    """The --encoder file, or by default the cached one of `key` (data, resolution, seed)."""
    return given or str(core.cache_folder() / "encoders" / f"encoder-{key}-v{ENCODER_VERSION}.pt")


def get_encoder(path: str, key: str, resolution: int, split_of, seed: int, steps: int,
                device: str | torch.device = "cpu", retrain: bool = False) -> tuple[Encoder, dict]:
    """The encoder at `path` (made for `key`: data, resolution, seed), trained first when missing or `retrain`.

    split_of(class_name) -> evaldata.Split gives the real slices (loaded only when the encoder must be trained)."""
    if os.path.exists(path) and not retrain:
        enc, info = load_encoder(path, device)
        if enc.resolution != resolution:
            raise UserError(f"encoder {path} is for {enc.resolution}x{enc.resolution} images, not "
                            f"{resolution}x{resolution}; pass another --encoder, or --train-encoder")
        if info.get("key") != key:
            print(f"note: encoder {path} was trained on other data ({info.get('data')})")
        print(f"encoder {path}: held-out accuracy {info['test_accuracy']:.3f}")
        return enc, {**info, "path": path, "sha256": core.file_sha256(path), "trained_now": False}
    why = "--train-encoder given" if retrain else "no encoder yet for this data"
    print(f"training the AD-vs-NC encoder ({why}; {steps} steps at {resolution}x{resolution})...")
    splits = {c: split_of(c) for c in CLASSES}
    start = time.perf_counter()
    enc, info = train_encoder({c: s.train.at_resolution(resolution) for c, s in splits.items()},
                              {c: s.test.at_resolution(resolution) for c, s in splits.items()},
                              seed, steps, device)
    info.update(key=key, data="; ".join(splits[c].train.source for c in CLASSES),
                seconds=round(time.perf_counter() - start, 1))
    save_encoder(enc, info, path)
    sharp, blurred = (", ".join(f"{c} {a:.3f}" for c, a in info[k].items())
                      for k in ("class_accuracy", "blurred_class_accuracy"))
    print(f"encoder saved to {path} ({info['seconds']} s); held-out accuracy {info['test_accuracy']:.3f} "
          f"({sharp}; blurred by {info['blurred_sigma']:g} px: {blurred})")
    return enc, {**info, "path": path, "sha256": core.file_sha256(path), "trained_now": True}


def evaluation_columns(fake: torch.Tensor, test: torch.Tensor, bank: torch.Tensor, pick: torch.Tensor,
                       encoder: Encoder, class_name: str, m: int, seed: int) -> tuple[dict, metrics.Audit]:
    """Both columns of evaluate.py's table: the evaluated images `fake` and the held-out reals `test`, each
    against the training reals. bank: the training slices, then their mirror images (the audit's training
    set); pick: the training slices (indices into bank) the distribution metrics compare with, m of them.

    Returns {"generated": ..., "real_test": ...} (metrics.metrics_of) and the pixel audit of `fake`."""
    bank_feats, _ = encoder_outputs(encoder, bank)
    test_feats, test_pred = encoder_outputs(encoder, test)
    fake_feats, fake_pred = encoder_outputs(encoder, fake)
    common = dict(ref=bank[pick], ref_feats=bank_feats[pick], bank_feats=bank_feats, bank_pix=metrics.pixels(bank),
                  test_feats=test_feats, test_pix=metrics.pixels(test), encoder=encoder, class_name=class_name,
                  m=m, seed=seed)
    print("computing the metrics of the evaluated images, then of the held-out reals...")
    generated, audit = metrics.metrics_of(fake, fake_pred, fake_feats, **common)
    floor, _ = metrics.metrics_of(test, test_pred, test_feats, **common)
    return {"generated": generated, "real_test": floor}, audit


# ----------------------------------------------------------------------------- Inception FID (optional)

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
        raise UserError(f"--inception-weights {path} is not torch-fidelity's InceptionV3 weights "
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
