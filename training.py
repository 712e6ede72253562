"""The training library of train.py: configuration, the schedule as a pure function of images
seen, the WGAN-GP losses, data-parallel helpers, and the Trainer that runs one iteration.

train.py (the command line and the run loop) and bench.py (which times this iteration) import it;
every name here is also reachable as train.<name>.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

import core
import dataset
import modules
from modules import Critic, Generator, ModelConfig

# ----------------------------------------------------------------------------- config

class RunError(core.UserError):
    """A problem with the run's inputs or state; str() is one line for the user."""


INIT_GENERATORS = ("raw", "ema")  # where a child's trained generator starts: the parent's raw one or its EMA


@dataclass
class TrainConfig:
    """Everything a run needs besides the architecture; saved as config.json and in checkpoints."""
    class_name: str = "AD"                 # diagnosis class trained: AD or NC, or 'all' (both pooled: a parent)
    init_from: str | None = None           # a child: the parent checkpoint (--class all) it started from
    data: str = "demo"                     # ADNI/NIfTI folder, or 'demo'
    preset: str = "full"                   # architecture + schedule preset (modules.PRESETS)
    resolution: int = 256                  # final resolution
    out: str = "runs/AD"                   # run folder
    seed: int = 0
    data_seed: int | None = None           # seed of the demo set (None = seed); fixed for A/B runs over seeds
    stable_kimg: float = 600.0             # thousands of images per stabilisation phase
    fade_kimg: float = 600.0               # thousands of images per fade-in phase
    final_kimg: float = 600.0              # stabilisation at the final resolution
    batch: dict[int, int] = field(default_factory=dict)      # global batch size per resolution
    lr: float = 0.001                      # Adam learning rate (both networks)
    lr_by_res: dict[int, float] = field(default_factory=dict)  # overrides of lr per resolution
    lr_rampdown: float = 0.0               # lr falls to 0 along a half cosine over this last fraction of the final phase
    stable_kimg_by_res: dict[int, float] = field(default_factory=dict)  # overrides of stable_kimg per resolution
    fade_kimg_by_res: dict[int, float] = field(default_factory=dict)    # overrides of fade_kimg per resolution
    betas: tuple[float, float] = (0.0, 0.99)
    critic_beta2: float | None = None      # the critic's Adam beta2 if not betas[1] (rounds 64, 67-68)
    critic_update_clip: float | None = None  # cap each critic weight's step at this many x its lr (None = off)
    spike_clip: float = 0.0                # after a logged penalty above spike_gp: critic_update_clip = this (0 = off)
    spike_gp: float = 5.0                  # the logged penalty that turns spike_clip on
    gp_lambda: float = 10.0                # gradient-penalty weight
    gp_every: int = 1                      # lazy regularisation: the penalty on every k-th critic step, x k
    drift: float = 0.001                   # weight of E[D(real)^2]
    n_critic: int = 1                      # critic steps per generator step
    style_mixing: float = 0.9              # probability of mixing two z's in a training batch
    mixing_active_only: bool = False       # draw the crossover among the layers of the current resolution
    reset_adam: bool = False               # clear Adam's moments when a new resolution starts (ProGAN)
    mapping_lr_scale: float = 1.0          # each Adam step of the mapping network x this (on top of its lr_mul)
    critic_lr_scale: float = 1.0           # the critic's Adam lr is lr x this (two time-scale update rule, TTUR)
    freeze_critic: int = 0                 # a child: its critic's k highest resolutions stay the parent's (FreezeD)
    init_generator: str = "raw"            # a child's trained generator starts as the parent's 'raw' one or its 'ema'
    ema_kimg: float = 10.0                 # EMA half-life of the generator, in kimg
    ema_rampup: float = 0.05               # EMA half-life <= this fraction of images seen (0 = off)
    amp: str = "auto"                      # autocast: auto, off, bf16 or fp16 (auto = bf16 on a CUDA GPU with it)
    channels_last: bool | None = None      # NHWC layout; None = default_channels_last (autocast, or a CPU)
    fp32_epilogue: bool = True             # under autocast the critic's epilogue and score stay fp32 (modules.Critic)
    compile: bool = False
    ckpt_every_kimg: float = 50.0          # rewrite checkpoint.pt this often (and at phase ends)
    log_every: int = 10                    # iterations per stats.jsonl line
    plot_every: int = 500                  # iterations between loss-plot redraws
    stop_kimg: float | None = None         # stop early (with a checkpoint) once this many kimg are seen
    skip_bad: bool = False                 # skip unreadable data files instead of stopping
    demo_count: int | None = None          # demo-set size per class (None = dataset.py's default)
    model: dict = field(default_factory=dict)  # overrides of the preset's ModelConfig (--channels, ...)
    minutes: float | None = None           # the schedule was fitted to this wall time (--minutes)
    probe_images_per_s: dict[int, float] = field(default_factory=dict)  # --minutes' measured speed per resolution
    fit_base: list[float] = field(default_factory=list)  # --minutes: every phase's kimg before the first fit

    def __post_init__(self):
        self.batch = {int(k): int(v) for k, v in self.batch.items()}
        self.lr_by_res = {int(k): float(v) for k, v in self.lr_by_res.items()}
        self.stable_kimg_by_res = {int(k): float(v) for k, v in self.stable_kimg_by_res.items()}
        self.fade_kimg_by_res = {int(k): float(v) for k, v in self.fade_kimg_by_res.items()}
        self.probe_images_per_s = {int(k): float(v) for k, v in self.probe_images_per_s.items()}
        self.betas = tuple(float(b) for b in self.betas)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"--betas (betas) must be two numbers in [0, 1) such as 0,0.99, got {self.betas}")
        self.fit_base = [float(k) for k in self.fit_base]
        if not 0.0 <= self.lr_rampdown <= 1.0:
            raise ValueError(f"--lr-rampdown (lr_rampdown) must be a fraction in [0, 1], got {self.lr_rampdown}")
        if self.mapping_lr_scale < 0:
            raise ValueError(f"--mapping-lr-scale (mapping_lr_scale) must be >= 0, got {self.mapping_lr_scale}")
        if self.critic_beta2 is not None and not 0 <= self.critic_beta2 < 1:
            raise ValueError(f"--critic-beta2 (critic_beta2) must be in [0, 1), got {self.critic_beta2}")
        if self.critic_update_clip is not None and not self.critic_update_clip > 0:
            raise ValueError(f"--critic-update-clip (critic_update_clip) must be > 0, got {self.critic_update_clip}")
        if self.spike_clip < 0:
            raise ValueError(f"--spike-clip (spike_clip) must be >= 0 (0 = off), got {self.spike_clip}")
        if not self.spike_gp > 0:
            raise ValueError(f"--spike-gp (spike_gp) must be > 0, got {self.spike_gp}")
        if self.critic_lr_scale <= 0:
            raise ValueError(f"--critic-lr-scale (critic_lr_scale) must be > 0, got {self.critic_lr_scale}")
        if self.freeze_critic < 0:
            raise ValueError(f"--freeze-critic (freeze_critic) must be >= 0, got {self.freeze_critic}")
        if self.freeze_critic and not self.init_from:
            raise ValueError("--freeze-critic keeps a parent's critic layers: use it with --init-from")
        if self.gp_every < 1:
            raise ValueError(f"--gp-every (gp_every) must be at least 1, got {self.gp_every}")
        if self.init_generator not in INIT_GENERATORS:
            raise ValueError(f"--init-generator (init_generator) must be raw or ema, got {self.init_generator!r}")
        if self.init_generator == "ema" and not self.init_from:
            raise ValueError("--init-generator ema starts a child from its parent's EMA: use it with --init-from")


TRAIN_PRESETS: dict[str, dict] = {
    "full": dict(stable_kimg=600, fade_kimg=600, final_kimg=600, ema_kimg=10,
                 batch={4: 128, 8: 128, 16: 64, 32: 32, 64: 32, 128: 16, 256: 16},
                 lr_by_res={128: 0.0015, 256: 0.002}, ckpt_every_kimg=50, log_every=10),
    # quick: on one CPU thread an image costs at most ~25% more at batch 8 than at 32 from 16x16 up,
    # so small batches there buy ~3x the updates for the same minutes; batch 8 beat 16, and 16 beat
    # 32, side by side at equal wall time in two seeds each (docs/evaluation.md, "Batch size"); at
    # 32 and 64 px batch 4 then beat 8 in two more seeds, with the EMA below (~20% fewer images).
    # Batch 2 at 64 px lost in two seeds (SWD up, recall down to 0.44; docs/evaluation.md, rounds 18-19).
    # EMA half-life 0.25 kimg (~60 steps at batch 4): at lr 0.002 the weights move fast, and a
    # 1-kimg average of them blurred the samples; 0.25 beat 1.0 and 2.0 on one trajectory in two
    # seeds on SWD, precision and both biomarkers (docs/evaluation.md, "EMA half-life").
    # Top-heavy schedule: 4 kimg per phase at 4-8 px, 5 at 16 px, final 64-px phase 16 kimg (was 10/8 and
    # 8): with --minutes the same wall time then buys about a third more 64-px images; it beat the flat schedule
    # at 14 CPU-minutes in two seeds (SWD 0.83x and 0.82x, ventricle W1 and precision better in both,
    # CSF W1 slightly worse in both; docs/evaluation.md, "A top-heavy schedule").
    # Critic lr x3 (TTUR, --critic-lr-scale): in the paired demo recipe x2 beat x1 side by side in two seeds
    # (SWD 0.81-0.93x in all four class-seed pairs, precision, both biomarker means and mean fidelity better;
    # rounds 24-25), x4 lost SWD to x2 in all four (rounds 28-29), and x3 beat x2 in two seeds (SWD 0.91-0.98x
    # in all four, recall and 7 of 8 biomarker means better; precision and fidelity a little lower; rounds
    # 34-35, docs/evaluation.md). Untested at the full preset's scale. x2 is not the safer choice: one of its three
    # parents blew up (penalty 5025) where x3 trained cleanly (rounds 61-63).
    # Spike guard (--spike-clip 3, --spike-gp 5): once a logged penalty passes 5 the critic's steps are capped at 3x
    # its lr for the rest of the run and in its children. Of 90 quick runs (30 parents, 60 children) of rounds 55-71
    # only the 5 that spiked or degraded ever logged a penalty above 5 (clean peaks <= 3.96), so a run that never
    # passes 5 trains exactly as without it (a later seed-0 README run passed it once, 8.5, and ended clean); the
    # README's collapsed seed-1 parent, replayed with it, switched at 12.3 kimg and ended clean (penalty <= 3) where
    # it had blown up (253). A cap from the start cost SWD in both seeds tried (rounds 70-71), and switching only at
    # 10 came too late (that replay still blew up): docs/evaluation.md, rounds 69-73.
    "quick": dict(stable_kimg=10, fade_kimg=8, final_kimg=16, ema_kimg=0.25, lr=0.002, critic_lr_scale=3.0,
                  spike_clip=3.0,
                  stable_kimg_by_res={4: 4, 8: 4, 16: 5}, fade_kimg_by_res={8: 4, 16: 5},
                  batch={4: 64, 8: 64, 16: 8, 32: 4, 64: 4},
                  ckpt_every_kimg=5, log_every=1, plot_every=200),
    "tiny": dict(stable_kimg=0.25, fade_kimg=0.25, final_kimg=0.25, ema_kimg=0.05, lr=0.002,
                 batch={4: 16, 8: 16, 16: 16, 32: 16}, ckpt_every_kimg=0.5, log_every=1,
                 plot_every=100),
}


# A parent (--class all) of these presets differs from a from-scratch AD or NC run in these fields, and its
# children go back to the preset's values (train.child_config). quick: the parent's mapping network learns at
# the synthesis layers' rate (StyleGAN's lr_mul 0.01, each Adam step x 100), its children's at 0.01 again. At
# 0.01 a 7-minute parent's mapping moved 0.2-0.3%; trained, it beat the preset side by side on SWD in every
# class and seed, with lower AD recall (docs/evaluation.md, round 16). From scratch it is untested. Not applied
# when --mapping-lr-mul is given (that flag then sets the rate itself).
PARENT_PRESETS: dict[str, dict] = {"quick": dict(mapping_lr_scale=100.0)}

# A child (--init-from) of these presets differs from its parent in these fields (train.child_config), unless a flag
# sets them. quick: no style mixing in children. A child's mapping network barely moves (lr x0.01), and w carries only
# about a fifth of the variety; without mixing, children beat 0.9 side by side in five seeds on SWD in nine of ten
# class-seed pairs (0.81-1.02x) and on recall in all ten, with 13 of 20 biomarker means nearer real; mixing kept the
# higher precision in six of ten (docs/evaluation.md, rounds 75 and 77, AVX2-only CPU). In parents mixing stays at 0.9:
# a parent without it lost in two seeds at equal images (round 79). From scratch it is untested. And a gradient-penalty
# weight of 5 instead of 10: on the same parents at equal images in two seeds it moved 7 of 8 biomarker means nearer
# real (all 8 biomarker W1 smaller), raised recall in all four class-seed pairs and the class difference in both
# seeds, with SWD 0.98x summed and precision lower in three of four (round 83); on two more parents the gain was
# smaller (biomarker means 5 of 8 nearer, SWD 1.00x; round 84). Parents and from-scratch runs keep 10.
CHILD_PRESETS: dict[str, dict] = {"quick": dict(style_mixing=0.0, gp_lambda=5.0)}


@dataclass(frozen=True)
class Phase:
    """Where training stands after `images_seen` images."""
    step: int            # resolution step: 4 * 2**step pixels
    alpha: float         # fade-in of the newest resolution, 1 = fully in
    batch: int           # global batch size
    lr: float
    name: str            # 'fade' or 'stable'
    index: int           # phase number 0, 1, ... (0 = 4x4 stable)
    done: bool = False   # training is over

    @property
    def resolution(self) -> int:
        return 4 * 2 ** self.step


def phases(max_step: int, cfg: TrainConfig) -> list[tuple[int, str, float]]:
    """(step, 'fade'|'stable', kimg) for every phase: 4x4 stable, then fade + stable per resolution.

    The final resolution's stable phase is final_kimg; the others are stable_kimg and fade_kimg,
    or their per-resolution overrides."""
    def stable(s):
        return cfg.final_kimg if s == max_step else cfg.stable_kimg_by_res.get(4 * 2 ** s, cfg.stable_kimg)
    out = [(0, "stable", stable(0))]
    for s in range(1, max_step + 1):
        out += [(s, "fade", cfg.fade_kimg_by_res.get(4 * 2 ** s, cfg.fade_kimg)), (s, "stable", stable(s))]
    return out


def total_kimg(max_step: int, cfg: TrainConfig) -> float:
    return sum(k for _, _, k in phases(max_step, cfg))


def rampdown(kimg: float, length: float, fraction: float) -> float:
    """The lr factor `kimg` into a final phase of `length` kimg: 1, then half a cosine down to 0 over its last
    `fraction` (0 = off). Meant to let the last weights settle instead of averaging still-moving ones in the
    EMA; from scratch it drew more CSF but lost SWD in both seeds tried (docs/evaluation.md, round 12), so
    every preset leaves it off (it lost in children too, round 14)."""
    if fraction <= 0 or length <= 0:
        return 1.0
    t = (kimg - (1.0 - fraction) * length) / (fraction * length)
    return 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def boundary_images(kimg: float) -> int:
    """The first image count at or past `kimg` thousand: where a phase that ends at `kimg` hands over.
    Rounded before the ceiling, so float noise in a sum of phase lengths (9.892000000000001) does not
    move a boundary by an image."""
    return math.ceil(round(kimg * 1000, 6))


def schedule(images_seen: int, max_step: int, cfg: TrainConfig) -> Phase:
    """The training state as a pure function of images seen (ProGAN's TrainingSchedule)."""
    kimg, start = images_seen / 1000.0, 0.0
    plan = phases(max_step, cfg)
    for i, (step, name, length) in enumerate(plan):
        end = boundary_images(start + length)
        if images_seen < end or i == len(plan) - 1:
            res = 4 * 2 ** step
            alpha = min(1.0, (kimg - start) / length) if name == "fade" and length > 0 else 1.0
            lr = cfg.lr_by_res.get(res, cfg.lr)
            if i == len(plan) - 1:
                lr *= rampdown(kimg - start, length, cfg.lr_rampdown)
            return Phase(step, alpha, cfg.batch[res], lr, name, i, done=images_seen >= end)
        start += length
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- losses

def critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss: E[D(fake)] - E[D(real)]."""
    return d_fake.float().mean() - d_real.float().mean()


def generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]."""
    return -d_fake.float().mean()


def drift_penalty(d_real: torch.Tensor) -> torch.Tensor:
    """E[D(real)^2], keeps the critic's output near zero (ProGAN)."""
    return d_real.float().pow(2).mean()


def gradient_penalty(critic_fn, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                     grad_scale: float = 1.0) -> torch.Tensor:
    """E[(||grad_x D(x)|| - 1)^2] on x = real + eps * (fake - real) (Gulrajani et al. 2017).

    critic_fn may run under autocast; the interpolates, the gradient and its norm stay fp32.
    With an fp16 GradScaler, pass its scale as grad_scale: the output is scaled before
    autograd.grad (so small gradients do not underflow) and the gradient unscaled after.
    """
    x = torch.lerp(real.detach().float(), fake.detach().float(), eps.view(-1, 1, 1, 1)).requires_grad_(True)
    score = critic_fn(x).float().sum() * grad_scale
    (grad,) = torch.autograd.grad(score, x, create_graph=True)
    grad = grad.float() / grad_scale
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


# ----------------------------------------------------------------------------- distributed

@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_arg: str | None) -> tuple[Dist, torch.device]:
    """Pick the device once; join the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = core.choose_device(device_arg)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world), device


def all_reduce_mean(tensors: list[torch.Tensor], ranks: Dist) -> None:
    """Average tensors in place over all processes, as one flat buffer (one collective)."""
    if ranks.world == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= ranks.world
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(part.view_as(t))


# ----------------------------------------------------------------------------- trainer

def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 natively (else bf16 autocast is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> str:
    """'auto' becomes 'bf16' on a CUDA device with native bf16, else 'off' (fp32).

    Not bf16 on a CPU even where it is native (AVX-512 BF16): there 3 of 16 bf16 children of the
    quick paired recipe collapsed (critic blown up, one blob per grid) against 0 of 14 in fp32,
    for a gain of about 1.1x the images (docs/evaluation.md, rounds 50-54). --amp bf16 still asks for it.
    """
    if amp == "auto":
        return "bf16" if device.type == "cuda" and native_bf16(device) else "off"
    if amp == "fp16" and device.type != "cuda":
        raise RunError("--amp fp16 needs a CUDA device; use --amp bf16 or off on a CPU")
    return amp


def default_channels_last(amp: str, device: torch.device) -> bool:
    """NHWC layout unless told: on under autocast, and on a CPU in fp32 too.

    On one CPU thread the quick preset's fp32 iteration ran 1.1-1.3x faster in NHWC from 8x8 up (0.97x at
    4x4), and the full preset's 1.04-1.07x (docs/performance.md). fp32 on a GPU stays NCHW (not measured).
    """
    return amp != "off" or device.type == "cpu"


class Trainer:
    """Generator, critic, EMA generator and their optimizers; `iterate` is one iteration.

    Gradients are averaged across processes by hand rather than by DistributedDataParallel,
    because the gradient penalty needs a double backward, which DDP's reducer does not follow.
    """

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device, ranks: Dist = Dist()):
        self.model_cfg, self.cfg, self.device, self.ranks = model_cfg, cfg, device, ranks
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G = Generator(model_cfg).to(device)
        self.D = Critic(model_cfg, fp32_epilogue=cfg.fp32_epilogue).to(device)
        self.G_ema = Generator(model_cfg).to(device).eval().requires_grad_(False)
        self.G_ema.load_state_dict(self.G.state_dict())

        # The mapping network's learning-rate multiplier (ModelConfig.mapping_lr_mul) lives in its layers'
        # lr_mul (equalized LR), so one Adam per network is right: a param group at lr * lr_mul would apply it twice.
        # fused Adam: one kernel per step instead of a few per parameter (CPU and CUDA)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=cfg.betas, eps=1e-8, fused=True)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=self.critic_betas(), eps=1e-8, fused=True)
        self.mapping_params = list(self.G.mapping.parameters())  # their steps x cfg.mapping_lr_scale
        # FreezeD: the from-image layer and conv block of the critic's k highest resolutions never train (no
        # gradient, so Adam skips them and the critic step's backward stops below them)
        top = model_cfg.max_step
        self.frozen_d = [p for s in range(max(top - cfg.freeze_critic + 1, 1), top + 1)
                         for p in (*self.D.from_image[s].parameters(), *self.D.blocks[s].parameters())]
        self.amp = resolve_amp(cfg.amp, device)
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.amp]
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")
        self.channels_last = default_channels_last(self.amp, device) if cfg.channels_last is None \
            else cfg.channels_last
        if self.channels_last:
            for m in (self.G, self.D, self.G_ema):
                m.to(memory_format=torch.channels_last)
        self.g_fwd, self.d_fwd = self.G, self.D
        self.penalty_path = True  # the critic's fast double-backward path for the penalty (bench.py compares)
        self.last_gp = torch.zeros((), device=device)  # logged on critic steps without the (lazy) penalty
        if cfg.compile:
            self.g_fwd, self.d_fwd = torch.compile(self.G), torch.compile(self.D)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _latents(self, n: int, step: int) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
        z = torch.randn(n, self.model_cfg.z_dim, device=self.device)
        if self.cfg.style_mixing > 0 and random.random() < self.cfg.style_mixing:
            # the layers in use at this step are 0 .. 2 * step + 1
            layers = 2 * (step + 1) if self.cfg.mixing_active_only else self.G.num_ws
            return z, torch.randn_like(z), random.randint(1, layers - 1)
        return z, None, None

    def _generate(self, n: int, step: int, alpha: float, update_w_avg: bool = False) -> torch.Tensor:
        z, z_mix, cross = self._latents(n, step)
        with self.autocast():
            img = self.g_fwd(z, step, alpha, z_mix=z_mix, crossover=cross, update_w_avg=update_w_avg,
                             clamp=False)
        if self.channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        return img

    def _optimizer_step(self, opt: torch.optim.Optimizer, net: torch.nn.Module, loss: torch.Tensor, lr: float,
                        scaled: tuple[list[torch.Tensor], float] | None = None,
                        clip: float | None = None) -> None:
        """One Adam step of `net`; `scaled` = (params, f) makes those parameters' step f times Adam's
        (a param group at lr * f, since Adam's step is linear in lr and its moments do not depend on it;
        done after the step so the optimizer and its checkpoints keep one group). `clip` = c caps every
        weight's step at c * lr (update clipping; Adam's moments are kept as Adam left them)."""
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.ranks.world > 1:
            self.scaler.unscale_(opt)
            all_reduce_mean([p.grad for p in net.parameters() if p.grad is not None], self.ranks)
        params = [p.detach() for p in scaled[0]] if scaled and scaled[1] != 1.0 else None
        before = torch._foreach_mul(params, 1.0) if params else None
        stepped = [p.detach() for p in net.parameters() if p.grad is not None] if clip else None
        start = torch._foreach_mul(stepped, 1.0) if stepped else None
        self.scaler.step(opt)
        self.scaler.update()
        if params:  # p <- before + f * (p - before)
            torch._foreach_lerp_(params, before, 1.0 - scaled[1])
        if stepped:  # p <- start + clamp(p - start, -c lr, c lr)
            delta = torch._foreach_sub(stepped, start)
            torch._foreach_clamp_min_(delta, -clip * lr)
            torch._foreach_clamp_max_(delta, clip * lr)
            torch._foreach_add_(start, delta)
            torch._foreach_copy_(stepped, start)

    def train_step(self, reals: list[torch.Tensor], step: int, alpha: float, lr: float,
                   iteration: int = 0) -> dict[str, torch.Tensor]:
        """One iteration: `n_critic` critic updates (one real batch each) and one generator
        update; `iterate` adds the EMA update. Returns the losses as 0-dim tensors
        (no device sync). With gp_every = k, the gradient penalty is computed on critic
        steps whose number (iteration * n_critic + j) is a multiple of k, weighted by k;
        the logged `gp` is then the last one computed."""
        cfg = self.cfg
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        for p in self.frozen_d:
            p.requires_grad_(False)
        for j, real in enumerate(reals):
            n = real.shape[0]
            with torch.no_grad():
                fake = self._generate(n, step, alpha)
            with self.autocast():
                if n % self.model_cfg.mbstd_group == 0:  # one critic call; stddev groups stay apart
                    d_real, d_fake = self.d_fwd(torch.cat([real, fake]), step, alpha).split(n)
                else:
                    d_real, d_fake = self.d_fwd(real, step, alpha), self.d_fwd(fake, step, alpha)
            loss_w = critic_loss(d_real, d_fake)
            loss_d = loss_w + cfg.drift * drift_penalty(d_real)
            if (iteration * len(reals) + j) % cfg.gp_every == 0:
                eps = torch.rand(n, device=self.device)
                self.last_gp = gradient_penalty(
                    lambda x: self._critic_autocast(x, step, alpha), real, fake, eps,
                    grad_scale=self.scaler.get_scale() if self.scaler.is_enabled() else 1.0)
                loss_d = loss_d + cfg.gp_lambda * cfg.gp_every * self.last_gp
            self._optimizer_step(self.opt_d, self.D, loss_d, lr * cfg.critic_lr_scale, clip=cfg.critic_update_clip)

        self.D.requires_grad_(False)
        self.G.requires_grad_(True)
        fake = self._generate(reals[0].shape[0], step, alpha, update_w_avg=True)
        with self.autocast():
            loss_g = generator_loss(self.d_fwd(fake, step, alpha))
        self._optimizer_step(self.opt_g, self.G, loss_g, lr,
                             scaled=(self.mapping_params, cfg.mapping_lr_scale))
        all_reduce_mean([self.G.mapping.w_avg], self.ranks)  # each rank saw its own z's
        self.G.requires_grad_(False)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "gp": self.last_gp.detach(),
                "wdist": -loss_w.detach(), "d_real": d_real.detach().float().mean()}

    def iterate(self, reals: list[torch.Tensor], step: int, alpha: float, lr: float, images_seen: int,
                global_batch: int, iteration: int = 0) -> dict[str, torch.Tensor]:
        """One training iteration as `run` performs it (and bench.py times it): `train_step`,
        then the EMA update; `images_seen` counts this iteration's `global_batch` images and
        `iteration` numbers it from 0. With reset_adam, the first iteration at a new
        resolution starts both optimizers afresh (a pure function of images seen, so a
        resumed run resets at the same iteration)."""
        if self.cfg.reset_adam and images_seen > global_batch:
            before = schedule(images_seen - global_batch - 1, self.model_cfg.max_step, self.cfg)
            if before.step != step:
                self.opt_g.state.clear()
                self.opt_d.state.clear()
        losses = self.train_step(reals, step, alpha, lr, iteration)
        self.update_ema(images_seen, global_batch)
        return losses

    def _critic_autocast(self, x: torch.Tensor, step: int, alpha: float) -> torch.Tensor:
        """The critic for the gradient penalty: always the eager module, because a
        torch.compile'd graph cannot be differentiated twice."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            return self.D(x, step, alpha, input_grad_only=self.penalty_path)

    @torch.no_grad()
    def update_ema(self, images_seen: int, global_batch: int) -> None:
        """G_ema <- lerp toward G with StyleGAN's half-life in images (ramped up early on)."""
        half_life = self.cfg.ema_kimg * 1000.0
        if self.cfg.ema_rampup > 0:
            half_life = min(half_life, images_seen * self.cfg.ema_rampup)
        beta = 0.5 ** (global_batch / max(half_life, 1e-8))
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - beta)
        torch._foreach_copy_(list(self.G_ema.buffers()), list(self.G.buffers()))

    def state(self) -> dict:
        return {"generator": self.G.state_dict(), "critic": self.D.state_dict(),
                "generator_ema": self.G_ema.state_dict(), "optim_g": self.opt_g.state_dict(),
                "optim_d": self.opt_d.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state(self, state: dict) -> None:
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["critic"])
        self.G_ema.load_state_dict(state["generator_ema"])
        self.opt_g.load_state_dict(state["optim_g"])
        self.opt_d.load_state_dict(state["optim_d"])
        for opt, betas in ((self.opt_g, tuple(self.cfg.betas)), (self.opt_d, self.critic_betas())):
            for group in opt.param_groups:  # a loaded optimizer brings its own betas; the config decides
                group["betas"] = betas
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def critic_betas(self) -> tuple[float, float]:
        b1, b2 = self.cfg.betas
        return (b1, b2 if self.cfg.critic_beta2 is None else self.cfg.critic_beta2)


def iteration_seed(seed: int, iteration: int, rank: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, iteration, rank)."""
    return (seed * 1_000_003 + iteration * 7_919 + rank * 104_729) % (2 ** 63)


def real_batch(images: torch.Tensor, idx: torch.Tensor, generator: torch.Generator, alpha: float,
               channels_last: bool = False, *, upsample: str) -> torch.Tensor:
    """The critic's real batch: uint8 images[idx] -> flipped, [-1, 1] floats on images' device.

    While a resolution fades in, reals are blended with their down-and-up-sampled selves by
    alpha, the same way the generator's output is (ProGAN), so the critic cannot tell fakes
    by their missing detail alone. `upsample` is the generator's mode (ModelConfig.upsample):
    with nearest-neighbour fakes and bilinear reals, the fading fakes were blocky where the
    reals were smooth, a difference the critic could score instead of anatomy.
    """
    x = dataset.prepare_batch(images[idx.to(images.device)], generator=generator)
    if alpha < 1.0:
        x = modules.fade(modules.upsample2x(modules.downsample2x(x), upsample), x, alpha)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
