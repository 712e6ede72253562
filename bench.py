"""Benchmark train.py's real training iteration, per resolution and precision.

    python bench.py --preset full --batch 16 --res 4 8 16 32 64 --precision fp32 bf16
    python bench.py --preset quick --res 4 8 16 32 64             # the CPU demo's widths
    python bench.py --preset full --batch train --res 4 8         # train.py's own batch sizes
    python bench.py --preset tiny --iters 2 --warmup 1            # a smoke check

One JSON line per (precision, resolution) with:
  images_per_s     a full iteration (critic step with gradient penalty, generator step, EMA
                   update) on `--batch` images: the median of `--iters` timings after warm-up;
  gflop_per_image  FLOPs of one real iteration (FlopCounterMode's formulas) / batch;
  gflops           images_per_s * gflop_per_image, the achieved rate;
  ceiling_gflops   the network's largest 3x3 convolution alone, forward + backward, at the same
                   batch, precision and memory layout, timed in turns with the iteration;
  utilization      gflops / ceiling_gflops;
  data_images_per_s  train.py's data path (index the in-memory set, flip, normalise, fade blend);
  peak_rss_mb      the process's peak resident memory so far.
The iteration runs at the resolution's fade-in midpoint (alpha 0.5) except at 4x4, so the
blend paths of both networks are included.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import core
import dataset
import modules
import training

PRECISIONS = {"fp32": "off", "bf16": "bf16", "fp16": "fp16"}


def make_trainer(preset: str, batch: int, precision: str, channels_last: bool,
                 device: torch.device, seed: int = 0, model: dict | None = None) -> training.Trainer:
    """A Trainer exactly as train.py builds it for this preset and precision (`model`: ModelConfig overrides,
    as train.py's --channels / --critic-channels give them)."""
    model_cfg = modules.preset(preset, **(model or {}))
    cfg = training.TrainConfig(**{**training.TRAIN_PRESETS[preset], "preset": preset,
                               "resolution": model_cfg.resolution, "seed": seed,
                               "amp": PRECISIONS[precision], "channels_last": channels_last})
    cfg.batch = {r: batch for r in model_cfg.resolutions}
    return training.Trainer(model_cfg, cfg, device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _OpFlopCounter(TorchDispatchMode):
    """FlopCounterMode's per-op formulas (convolutions, their backward, matmuls) without its
    module tracker, whose backward hooks break autograd.grad(create_graph=True) in the
    gradient penalty. The double backward reaches it as ordinary convolution ops."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(fn) -> int:
    """FLOPs of one call of fn()."""
    with _OpFlopCounter() as counter:
        fn()
    return counter.total


def largest_conv(model_cfg: modules.ModelConfig, res: int) -> tuple[int, int, int]:
    """(in, out, resolution) of the 3x3 convolution with the most FLOPs active up to `res`."""
    ch = model_cfg.channels
    convs = [(ch[r // 2] if r > 4 else ch[4], ch[r], r) for r in model_cfg.resolutions if r <= res]
    convs += [(ch[r], ch[r], r) for r in model_cfg.resolutions if r <= res]
    return max(convs, key=lambda c: c[0] * c[1] * c[2] ** 2)


def conv_ceiling(cin: int, cout: int, res: int, batch: int, trainer: training.Trainer):
    """One 3x3 convolution, forward + backward (input and weight gradients), at the trainer's
    precision and layout: (a callable that runs it once, its FLOPs)."""
    dev = trainer.device
    x = torch.randn(batch, cin, res, res, device=dev, requires_grad=True)
    w = torch.randn(cout, cin, 3, 3, device=dev, requires_grad=True)
    if trainer.channels_last:
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)

    def fwd_bwd():
        with trainer.autocast():
            y = F.conv2d(x, w, padding=1)
        y.backward(torch.ones_like(y))

    return fwd_bwd, 3 * 2 * batch * cin * cout * 9 * res * res  # forward, grad input, grad weight


def _interleaved_medians(fns, iters: int, warmup: int, device: torch.device) -> list[float]:
    """Median seconds of each fn, timed in turns (fn0, fn1, fn0, fn1, ...) so that a machine
    whose speed drifts (shared hosts, turbo) slows all of them alike and their ratio holds."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    _sync(device)
    times = [[] for _ in fns]
    for _ in range(iters):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def bench_resolution(preset: str, res: int, batch: int, precision: str, channels_last: bool,
                     device: torch.device, slices: dataset.SliceSet, iters: int, warmup: int,
                     penalty_path: str = "fast", model: dict | None = None) -> dict:
    trainer = make_trainer(preset, batch, precision, channels_last, device, model=model)
    trainer.penalty_path = penalty_path == "fast"
    step = int(res).bit_length() - 3
    alpha = 0.5 if step > 0 else 1.0
    images = slices.at_resolution(res).to(device)
    gen = torch.Generator().manual_seed(0)

    def data():
        idx = torch.randint(len(images), (batch,), generator=gen)
        return training.real_batch(images, idx, gen, alpha, channels_last, upsample=trainer.model_cfg.upsample)

    reals = data()
    seen = [10 ** 6]

    def one():
        seen[0] += batch
        trainer.iterate([reals], step, alpha, trainer.cfg.lr, seen[0], batch)

    flops = count_flops(one)
    conv, conv_flops = conv_ceiling(*largest_conv(trainer.model_cfg, res), batch, trainer)
    t_iter, t_conv = _interleaved_medians([one, conv], iters, warmup, device)
    (t_data,) = _interleaved_medians([data], max(iters, 5), warmup, device)
    ceiling = conv_flops / t_conv / 1e9
    ips = batch / t_iter
    gflops = ips * flops / batch / 1e9
    row = {"res": res, "batch": batch, "precision": precision, "channels_last": channels_last,
           "penalty_path": penalty_path,
           "images_per_s": ips, "gflop_per_image": flops / batch / 1e9, "gflops": gflops,
           "ceiling_gflops": ceiling, "utilization": gflops / ceiling, "data_images_per_s": batch / t_data,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in row.items()}


def _batch_arg(text: str) -> int | str:
    if text == "train":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a positive number of images nor 'train'")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(modules.PRESETS), default="full", help="network widths to benchmark")
    p.add_argument("--batch", type=_batch_arg, default=16,
                   help="images per iteration, or 'train': train.py's batch for each resolution of the preset")
    p.add_argument("--res", type=int, nargs="+", default=None,
                   help="resolutions to benchmark (default: every resolution of the preset up to 64)")
    p.add_argument("--precision", nargs="+", choices=sorted(PRECISIONS), default=["fp32", "bf16"],
                   help="fp32, or bf16/fp16 autocast (fp16 only on CUDA)")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                   help="NHWC layout; auto = train.py's default (on for bf16/fp16 and on a CPU, off for fp32 on a GPU)")
    p.add_argument("--penalty-path", choices=["fast", "plain"], default="fast",
                   help="the gradient penalty's critic call: train.py's path (fast) or plain F.conv2d, "
                        "whose double backward is ATen's (for comparing the two on your hardware)")
    p.add_argument("--channels", type=core.res_map(int), default=None, metavar="C or RES:C,...",
                   help="feature width in both networks, as train.py's flag (e.g. 64:16)")
    p.add_argument("--critic-channels", type=core.res_map(int), default=None, metavar="RES:C,...",
                   help="the critic's width at these resolutions, as train.py's flag (e.g. 64:16)")
    p.add_argument("--iters", type=int, default=5, help="timed iterations per resolution (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    core.add_threads_flag(p)
    p.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    args = p.parse_args(argv)

    core.set_threads(args.threads)
    try:
        device = core.choose_device(args.device)
    except core.UserError as e:
        p.error(str(e))
    model = {k: v for k, v in (("channels", args.channels), ("critic_channels", args.critic_channels))
             if v is not None}
    try:
        model_cfg = modules.preset(args.preset, **model)
    except ValueError as e:
        p.error(f"--channels / --critic-channels: {e}")
    res_list = args.res or [r for r in model_cfg.resolutions if r <= 64]
    bad = [r for r in res_list if r not in model_cfg.resolutions]
    if bad:
        p.error(f"--res {bad} not in the {args.preset} preset's resolutions {model_cfg.resolutions}")
    slices = dataset.load_slices(None, "AD", "train", max(res_list), demo_count=256)
    for precision in args.precision:
        cl = {"on": True, "off": False}[args.channels_last] if args.channels_last != "auto" else \
            training.default_channels_last(PRECISIONS[precision], device)
        for res in res_list:
            batch = training.TRAIN_PRESETS[args.preset]["batch"][res] if args.batch == "train" else args.batch
            row = bench_resolution(args.preset, res, batch, precision, cl, device,
                                   slices, args.iters, args.warmup, args.penalty_path, model)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
