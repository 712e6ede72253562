"""Train one class's progressive StyleGAN with WGAN-GP.

    python train.py --class AD --preset quick              # demo data, 64x64, minutes on a CPU
    python train.py --class NC --preset quick --data /data/ADNI
    python train.py --class AD                             # full preset: 256x256, for a GPU
    python train.py --class AD --resume                    # continue runs/AD/checkpoint.pt
    python train.py --class AD --resume auto               # continue if it exists, else start (requeue)
    torchrun --nproc_per_node=2 train.py --class AD        # data parallel over 2 processes

The run folder (--out, default runs/<CLASS>) gets checkpoint.pt (rewritten atomically),
snapshot_<R>x<R>.pt per finished resolution, config.json, stats.jsonl, the two loss
plots and samples/. Progress is counted in images seen (kimg); resolution, fade-in alpha,
batch size and learning rate are a pure function of it (see `schedule`), so a resumed
run continues exactly where the checkpoint left it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shlex
import signal
import sys
import threading
import time

STARTED = time.perf_counter()  # --minutes counts from here, so the budget includes importing torch

import torch
import torch.distributed as dist

import core
import dataset
import modules
from core import write_json_atomic, write_text_atomic  # noqa: F401 (train.write_json_atomic is used by name)
from modules import ModelConfig
from training import (CHILD_PRESETS, INIT_GENERATORS, PARENT_PRESETS, TRAIN_PRESETS, Dist, Phase, RunError, TrainConfig, Trainer,  # noqa: F401 (train.<name>
                      all_reduce_mean, boundary_images, critic_loss, drift_penalty,  # is used by tests, bench.py
                      generator_loss, gradient_penalty, iteration_seed, native_bf16,  # and users' scripts)
                      phases, real_batch, resolve_amp, schedule, setup_distributed, total_kimg)

# ----------------------------------------------------------------------------- outputs

def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard's smoothing slider)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def read_stats(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# A logged gradient penalty above this means the critic may be blowing up. On the quick demo recipe (fp32, 2026-12-03)
# 13 of 16 parents and 29 of 32 children peaked at 2.8 or less; the three parents above 10 (16, 29, 253) gave
# every failed or degraded child of that day (README, "One run is one draw").
GP_WARN = 10.0


def penalty_peak(rows: list[dict]) -> tuple[float, float] | None:
    """(largest logged gradient penalty, kimg where it was logged) over stats.jsonl rows; None without rows."""
    rows = [r for r in rows if isinstance(r.get("gp"), (int, float))]
    if not rows:
        return None
    top = max(rows, key=lambda r: r["gp"])
    return float(top["gp"]), float(top["kimg"])


def penalty_warning(gp: float, kimg: float) -> str:
    return (f"warning: gradient penalty {gp:.1f} at {kimg:.2f} kimg (above {GP_WARN:g}; most clean quick runs stay below 4): "
            "the critic may be blowing up; if samples/ shows one repeated blob, train again with another --seed")


def plot_losses(stats_path: str, out_dir: str, class_name: str) -> list[str]:
    """Draw <CLASS>_critic_loss.png and <CLASS>_generator_loss.png: loss against iteration
    (batch number), raw and smoothed, with each resolution phase marked. Returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_stats(stats_path)
    if not rows:
        return []
    it = [r["iteration"] for r in rows]
    starts = [(r["iteration"], r["resolution"], r["phase"]) for i, r in enumerate(rows)
              if i == 0 or (r["resolution"], r["phase"]) != (rows[i - 1]["resolution"], rows[i - 1]["phase"])]
    weight = min(0.99, max(0.0, 1.0 - 20.0 / len(rows)))  # ~ window of len/20 points
    paths = []
    for key, title, fname in [("loss_d", "critic loss (WGAN + GP + drift)", "critic_loss"),
                              ("loss_g", "generator loss", "generator_loss")]:
        vals = [r[key] for r in rows]
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        ax.plot(it, vals, color="tab:blue", alpha=0.25, lw=0.8, label="raw")
        ax.plot(it, smooth(vals, weight), color="tab:blue", lw=1.8, label=f"smoothed (EMA {weight:.2f})")
        lo, hi = _robust_limits(vals)
        ax.set_ylim(lo, hi)
        for x, res, phase in starts:
            ax.axvline(x, color="grey", ls=":" if phase == "fade" else "-", lw=0.8)
            ax.text(x, hi, f" {res}px {phase}", rotation=90, va="top", ha="left", fontsize=7, color="dimgrey")
        ax.set_xlabel("iteration (batch number)")
        ax.set_ylabel("loss")
        ax.set_title(f"{class_name} {title}, {rows[-1]['kimg']:.1f} kimg")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{class_name}_{fname}.png")
        core.save_figure_atomic(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def _robust_limits(vals: list[float]) -> tuple[float, float]:
    """y-limits that ignore the first wild iterations: 1st-99th percentile, padded."""
    s = sorted(vals)
    lo, hi = s[int(0.01 * (len(s) - 1))], s[int(0.99 * (len(s) - 1))]
    pad = 0.15 * (hi - lo or 1.0)
    return lo - pad, hi + pad * 3


def append_line(text: str, path: str) -> None:
    """Append one line to stats.jsonl; a failed write raises an OSError that names `path`."""
    try:
        with open(path, "a") as f:
            f.write(text + "\n")
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), path) from None


def truncate_stats(path: str, iteration: int) -> None:
    """On resume, drop lines a killed run logged after its last checkpoint."""
    rows = [r for r in read_stats(path) if r["iteration"] <= iteration]
    write_text_atomic("".join(json.dumps(r) + "\n" for r in rows), path)


# ----------------------------------------------------------------------------- signals and the run lock

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, n))
EXIT_CODES = {"SIGTERM": 128 + 15, "SIGINT": 128 + 2, "SIGUSR1": 0}  # SIGUSR1: a requeue, not a failure


class Stopped(Exception):
    """A stop signal arrived before the first iteration: nothing new to save."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """SIGTERM, SIGINT and SIGUSR1 (SLURM's preemption and time-limit warnings, Ctrl-C) turned
    into a request that the training loop honours between iterations.

    Until `armed` (loading data, probing speed) a signal raises `Stopped` at once. From the
    first iteration on, the handler only records it: the iteration in flight finishes, the
    checkpoint is written, and a second signal cannot cut that save short."""

    def __init__(self):
        self.signum: int | None = None
        self.armed = False
        self._previous: dict = {}

    def install(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if first and not self.armed:
            raise Stopped(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def agreed(self, ranks: Dist, device: torch.device) -> bool:
        """Whether any process was signalled; under torchrun one tiny all-reduce per iteration,
        so that every rank stops after the same iteration."""
        if ranks.world == 1:
            return self.signum is not None
        flag = torch.tensor([float(self.signum or 0)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if self.signum is None and flag.item():
            self.signum = int(flag.item())
        return bool(flag.item())


class RunLock:
    """An OS advisory lock (flock) on <out>/train.lock for as long as a run trains there: a
    second train.py on the same folder stops at once. The OS drops the lock when the process
    ends in any way (SIGKILL included), so it never goes stale; the file itself stays."""
    NAME = "train.lock"

    def __init__(self, folder: str):
        self.folder, self.path, self._file = folder, os.path.join(folder, self.NAME), None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # no flock on this OS: run unprotected, as before
            return self
        os.makedirs(self.folder, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            pid = f.read().strip() or "unknown"
            f.close()
            raise RunError(f"{self.folder} is in use by another train.py (pid {pid}, lock {self.path}); "
                           "wait for it to end, stop it, or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the lock
            self._file = None


def resume_command(argv: list[str], world: int = 1) -> str:
    """The command that continues this run: the same arguments with --resume."""
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
            if a == "auto":
                continue
        if a == "--resume":
            skip = True
            continue
        if not a.startswith("--resume="):
            args.append(a)
    launcher = "python" if world == 1 else f"torchrun --nproc_per_node={world}"
    return f"{launcher} train.py {shlex.join(args)} --resume"


# ----------------------------------------------------------------------------- the run

PROBE_SECONDS = 2.0    # --minutes: time each resolution's iteration at least this long (after 2 warm-ups)
FIT_RESERVE = 0.04     # --minutes: share of the time left kept for sample grids, checkpoints and plots
FIT_FINAL_S = 5.0      # --minutes: seconds kept for the final checkpoint, snapshot, samples and plots
FIT_MEASURE_S = 10.0   # --minutes: seconds of training at a resolution before its measured speed is used


def final_phase_start(max_step: int, cfg: TrainConfig) -> int:
    """Images seen when the final resolution's stable phase starts (where a child begins)."""
    plan = phases(max_step, cfg)
    images = boundary_images(sum(length for _, _, length in plan[:-1]))
    assert schedule(images, max_step, cfg).index == len(plan) - 1
    return images


def probe_speed(model_cfg: ModelConfig, cfg: TrainConfig, slices: dataset.SliceSet, device: torch.device,
                ranks: Dist = Dist(), from_step: int = 0) -> dict[int, float]:
    """Images per second of the real training iteration at each resolution from `from_step` on (at
    fade-in midpoint, the dearer of the two phases), on a throwaway trainer, so the run itself
    starts untouched."""
    probe = Trainer(model_cfg, cfg, device, ranks)
    gen = torch.Generator().manual_seed(cfg.seed)
    speed = {}
    for s, res in enumerate(model_cfg.resolutions):
        if s < from_step:
            continue
        batch, alpha = cfg.batch[res] // ranks.world, 0.5 if s else 1.0
        images = slices.at_resolution(res).to(device)
        n, elapsed, warmup = 0, 0.0, 2
        # whole cycles of the lazy penalty, and long enough to average out the noise
        while n < warmup + 2 * cfg.gp_every or elapsed < PROBE_SECONDS:
            t = time.perf_counter()
            reals = [real_batch(images, torch.randint(len(images), (batch,), generator=gen), gen, alpha,
                                probe.channels_last, upsample=model_cfg.upsample) for _ in range(cfg.n_critic)]
            losses = probe.iterate(reals, s, alpha, cfg.lr, 10 ** 6, cfg.batch[res], n)
            float(losses["loss_d"])  # waits for the device
            if n >= warmup:
                elapsed += time.perf_counter() - t
            n += 1
        speed[res] = cfg.batch[res] * (n - warmup) / elapsed
    return speed


def fit_schedule(cfg: TrainConfig, max_step: int, images_seen: int, speed: dict[int, float],
                 seconds: float) -> TrainConfig:
    """`cfg` with the phases still ahead scaled by one factor, so that training from `images_seen`
    to the end takes `seconds` (less FIT_RESERVE) at `speed` (images/s per resolution).

    Phases already done keep their length, and so does a fade-in under way (its alpha stays
    continuous); a stable phase under way keeps what it has done and scales what is left.
    The factor applies to the plan before any fit (`cfg.fit_base`, recorded by the first fit), not
    to the last fit's lengths: a phase that one slow spell squeezed to nothing gets its share back
    once the speed recovers. Every phase's length is written out per resolution, so the result
    stands on its own."""
    plan = phases(max_step, cfg)
    base = cfg.fit_base if len(cfg.fit_base) == len(plan) else [length for _, _, length in plan]
    cur = schedule(images_seen, max_step, cfg).index  # the phase under way, with schedule's boundaries
    name, start = plan[cur][1], sum(length for _, _, length in plan[:cur])
    done = min(max(images_seen / 1000.0 - start, 0.0), plan[cur][2])
    fixed_cur = name == "fade" and done > 0  # a fade-in under way keeps its length
    fixed = (plan[cur][2] - done) * 1000 / speed[4 * 2 ** plan[cur][0]] if fixed_cur else 0.0
    # what is left of each phase, in the units of the plan before any fit
    left_cur = base[cur] * (1 - done / plan[cur][2]) if plan[cur][2] > 0 else 0.0
    scalable = [(j, left_cur if j == cur else base[j]) for j in range(len(plan))
                if j > cur or (j == cur and not fixed_cur)]
    planned = sum(k * 1000 / speed[4 * 2 ** plan[j][0]] for j, k in scalable)
    f = max((seconds - FIT_FINAL_S) * (1 - FIT_RESERVE) - fixed, 0.0) / planned if planned > 0 else 0.0
    lengths = [length for _, _, length in plan]
    for j, k in scalable:
        lengths[j] = round((done if j == cur else 0.0) + f * k, 4)
    stable, fade, final = dict(cfg.stable_kimg_by_res), dict(cfg.fade_kimg_by_res), cfg.final_kimg
    for (step, name, _), length in zip(plan, lengths):
        res = 4 * 2 ** step
        if name == "fade":
            fade[res] = length
        elif step == max_step:
            final = length
        else:
            stable[res] = length
    return dataclasses.replace(cfg, stable_kimg_by_res=stable, fade_kimg_by_res=fade, final_kimg=final,
                               fit_base=list(base))


class Clock:
    """--minutes: the run's deadline, and the training speed measured per resolution, from which
    the phases ahead are re-fitted at every log line, phase end and periodic checkpoint (this
    machine's speed drifts; the probe at the start is only a first guess)."""

    def __init__(self, seconds_left: float, probe: dict[int, float]):
        self.deadline = time.perf_counter() + seconds_left
        self.probe = probe
        self.images: dict[int, int] = {}
        self.seconds: dict[int, float] = {}
        self.last_res: int | None = None  # the newest resolution measured for FIT_MEASURE_S or more

    def record(self, res: int, images: int, seconds: float) -> None:
        self.images[res] = self.images.get(res, 0) + images
        self.seconds[res] = self.seconds.get(res, 0.0) + seconds
        if self.seconds[res] >= FIT_MEASURE_S:
            self.last_res = res

    def speed(self) -> dict[int, float]:
        """Measured images/s where measured for FIT_MEASURE_S or more, else the probe's scaled by how
        far the newest such measurement is from its probe (the same drift is assumed for the rest).
        A resolution's first iterations run up to 2x slower (new layers warming up); trusted alone,
        they once made a fit give the final phase no time at all."""
        ratio = 1.0
        if self.last_res is not None:
            ratio = self.images[self.last_res] / self.seconds[self.last_res] / self.probe[self.last_res]
        return {r: self.images[r] / self.seconds[r] if self.seconds.get(r, 0) >= FIT_MEASURE_S else v * ratio
                for r, v in self.probe.items()}

    def refit(self, cfg: TrainConfig, max_step: int, images_seen: int) -> TrainConfig:
        return fit_schedule(cfg, max_step, images_seen, self.speed(), self.deadline - time.perf_counter())


def write_run_config(model_cfg: ModelConfig, cfg: TrainConfig, trainer: Trainer, ranks: Dist) -> None:
    """config.json: the resolved architecture and training config (with --minutes, the schedule
    as last fitted), and where the run runs."""
    write_json_atomic({"model": model_cfg.to_dict(), "train": dataclasses.asdict(cfg),
                       "world_size": ranks.world, "device": str(trainer.device), "amp": trainer.amp,
                       "channels_last": trainer.channels_last, "threads": torch.get_num_threads()},
                      os.path.join(cfg.out, "config.json"))


def _agreed(cfg: TrainConfig, ranks: Dist) -> TrainConfig:
    """Rank 0's config on every rank (a --minutes fit depends on each process's own timing)."""
    if ranks.world == 1:
        return cfg
    box = [cfg]
    dist.broadcast_object_list(box, 0)
    return box[0]


def run(model_cfg: ModelConfig, cfg: TrainConfig, resume_state: dict | modules.Checkpoint | None = None,
        device_arg: str | None = None, progress: bool = True, started: float | None = None,
        stop: StopRequest | None = None, parent: modules.Checkpoint | None = None) -> Trainer:
    """Train one class, or continue `resume_state` (a loaded checkpoint); returns the trainer.
    `started`: the perf_counter time from which --minutes counts (default: now).
    `stop`: installed signal handlers; a signal ends the run after the iteration in flight,
    with a checkpoint (see StopRequest).
    `parent`: a --class all checkpoint at its final resolution: the run is its child, starting from
    its networks, EMA (w average included) and optimizers at the start of the final phase."""
    resume = modules.Checkpoint.from_dict(resume_state) if isinstance(resume_state, dict) else resume_state
    r = TrainingRun(model_cfg, cfg, resume, device_arg, time.perf_counter() if started is None else started, parent)
    r.prepare(progress)
    if stop is not None:
        stop.armed = True  # from here a signal waits for the iteration in flight (see StopRequest)
    while r.images_seen < r.stop_kimg * 1000 and r.train_one(stop):
        pass
    r.finish(stop)
    return r.trainer


class TrainingRun:
    """One invocation of `run` in named steps: `prepare` (data, --minutes fit, networks, resume),
    `train_one` per iteration (with its logging, checkpoints and sample grids), `finish`.
    Holds what the steps share: counters, the clock, the losses not yet logged."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, resume: modules.Checkpoint | None,
                 device_arg: str | None, started: float, parent: modules.Checkpoint | None = None):
        self.model_cfg, self.cfg, self.resume, self.started = model_cfg, cfg, resume, started
        self.parent_state = parent if resume is None else None  # a child's first start (a resumed child has run)
        self.ranks, self.device = setup_distributed(device_arg)
        self.ckpt_path = os.path.join(cfg.out, "checkpoint.pt")
        self.stats_path = os.path.join(cfg.out, "stats.jsonl")
        if resume is not None:
            self.images_seen = resume.images_seen
        else:  # a child starts where its parent's final phase starts
            self.images_seen = final_phase_start(model_cfg.max_step, cfg) if parent is not None else 0
        self.iteration = 0
        self.spent_before = resume.elapsed_s if resume is not None else 0.0
        self.clock: Clock | None = None
        self.pending: list[dict] = []
        self.signalled = False
        self.warned_gp = False
        self.bar = None
        self.parent = dict(resume.parent) if resume is not None else {}  # what the checkpoint records

    def spent(self) -> float:
        """Wall seconds of this run so far, earlier invocations included (--minutes)."""
        return round(self.spent_before + time.perf_counter() - self.started, 2)

    # -- prepare
    def prepare(self, progress: bool) -> None:
        cfg, main = self.cfg, self.ranks.main
        if main:
            os.makedirs(cfg.out, exist_ok=True)
        if self.resume is not None:
            self._check_resumable()
        self.slices = dataset.load_slices(None if cfg.data == "demo" else cfg.data, cfg.class_name, "train",
                                          self.model_cfg.resolution, skip_bad=cfg.skip_bad,
                                          demo_count=cfg.demo_count,
                                          seed=core.demo_seed(cfg))
        if cfg.minutes:
            self._fit_minutes()
        self.trainer = Trainer(self.model_cfg, self.cfg, self.device, self.ranks)
        if self.resume is not None:
            self._restore()
        else:
            if self.parent_state is not None:
                self._start_from_parent()
            stale = read_stats(self.stats_path) if main else []
            if stale:  # a run killed before its first checkpoint
                print(f"note: {self.stats_path} held {len(stale)} lines of a run that saved no checkpoint; "
                      "starting it over", file=sys.stderr)
                truncate_stats(self.stats_path, 0)
        if main:
            write_run_config(self.model_cfg, self.cfg, self.trainer, self.ranks)
            self._print_header()
        self.stop_kimg = self._stop_kimg()
        self.grid_seeds = range(81)  # the fixed latents of every sample grid
        if main and progress:
            from tqdm import tqdm
            self.bar = tqdm(total=round(self.stop_kimg * 1000), unit="img", unit_scale=True,
                            initial=min(self.images_seen, round(self.stop_kimg * 1000)),
                            dynamic_ncols=True, file=sys.stdout)
        self.reals_res, self.reals_dev = None, None
        self.last_ckpt_kimg, self.t_log, self.n_log = self.images_seen / 1000.0, time.perf_counter(), 0

    def _check_resumable(self) -> None:
        state, cfg = self.resume, self.cfg
        if state.class_name != cfg.class_name:
            raise RunError(f"{self.ckpt_path} is a class {state.class_name} checkpoint, not {cfg.class_name}; "
                           f"pass --class {state.class_name} or another --out")
        if ModelConfig.from_dict(state.model_config) != self.model_cfg:
            raise RunError(f"{self.ckpt_path} was trained with another architecture than --preset {cfg.preset} "
                           f"--resolution {cfg.resolution}; resume with the run's own settings")
        if not (state.generator and state.critic and state.optim_g and state.optim_d):
            raise RunError(f"{self.ckpt_path} holds a generator only (no critic or optimizers) and cannot be "
                           "resumed; start a new run in another --out")

    def _fit_minutes(self) -> None:
        """Fit the schedule to the time left (a resumed run: what its checkpoint had not spent)."""
        cfg, max_step = self.cfg, self.model_cfg.max_step
        if not cfg.probe_images_per_s:
            ahead = schedule(self.images_seen, max_step, cfg).step  # a child probes its final resolution only
            speed = probe_speed(self.model_cfg, cfg, self.slices, self.device, self.ranks, ahead)
            cfg = dataclasses.replace(cfg, probe_images_per_s={r: round(v, 2) for r, v in speed.items()})
        self.clock = Clock(cfg.minutes * 60 - self.spent(), cfg.probe_images_per_s)
        cfg = self.cfg = _agreed(self.clock.refit(cfg, max_step, self.images_seen), self.ranks)
        if total_kimg(max_step, cfg) * 1000 < self.images_seen + cfg.batch[4 * 2 ** max_step]:
            raise RunError(f"--minutes {cfg.minutes:g} leaves no time to train after start-up "
                           f"({self.spent():.0f} s spent); pass a larger --minutes")
        if self.ranks.main:
            print(f"--minutes {cfg.minutes:g}: measured " + ", ".join(
                f"{r}px {v:.0f}" for r, v in cfg.probe_images_per_s.items())
                + f" img/s; schedule fitted to {total_kimg(max_step, cfg):.1f} kimg "
                  "(re-fitted as it goes to the speed measured in training)")

    def _restore(self) -> None:
        """Networks, optimizers and every random state the checkpoint holds (each iteration
        reseeds from its number anyway, so these matter only to code outside the loop)."""
        state = self.resume
        self.trainer.load_state(state.to_dict())
        if "torch" in state.rng:
            torch.set_rng_state(state.rng["torch"])
        if "python" in state.rng:
            random.setstate((3, tuple(state.rng["python"]), None))
        if "cuda" in state.rng and torch.cuda.is_available() and len(state.rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state.rng["cuda"])
        self.iteration = state.iteration
        if self.ranks.main:
            truncate_stats(self.stats_path, self.iteration)

    def _start_from_parent(self) -> None:
        """A child's first start: the parent's networks, EMA and optimizers; its own counters."""
        parent = self.parent_state
        state = parent.to_dict()
        if self.cfg.init_generator == "ema":  # the trained generator starts from the parent's EMA weights
            state["generator"] = state["generator_ema"]
        self.trainer.load_state(state)
        self.parent = {"path": os.path.abspath(self.cfg.init_from), "sha256": core.file_sha256(self.cfg.init_from),
                       "images_seen": parent.images_seen}
        if self.ranks.main:
            print(f"child of {self.cfg.init_from} ({parent.images_seen / 1000:.1f} kimg, sha256 "
                  f"{self.parent['sha256'][:12]}): class {self.cfg.class_name} from "
                  f"{self.images_seen / 1000:.1f} kimg, the start of the final phase")

    def _print_header(self) -> None:
        res = self.model_cfg.resolution
        print(f"data: {self.slices.source}")
        print(f"class {self.cfg.class_name}: {len(self.slices)} training images at {res}x{res}")
        print(f"device: {self.device}" + (f" x {self.ranks.world} processes" if self.ranks.world > 1 else "")
              + f", amp: {self.trainer.amp}, channels_last: {self.trainer.channels_last}, out: {self.cfg.out}")

    # -- one iteration
    def real_batches(self, phase: Phase) -> list[torch.Tensor]:
        """The critic's real batches of this iteration. Everything random in an iteration comes
        from seeds of (run seed, iteration): the batch is drawn for the whole world, then each
        rank takes its shard."""
        cfg, ranks = self.cfg, self.ranks
        if phase.batch % ranks.world:
            raise RunError(f"batch size {phase.batch} at {phase.resolution}px does not split over "
                           f"{ranks.world} processes; pick --batch values divisible by {ranks.world}")
        if self.reals_res != phase.resolution:
            self.reals_res = phase.resolution
            self.reals_dev = self.slices.at_resolution(phase.resolution).to(self.device)
        torch.manual_seed(iteration_seed(cfg.seed, self.iteration, ranks.rank))
        random.seed(iteration_seed(cfg.seed, self.iteration, ranks.rank))
        data_gen = torch.Generator().manual_seed(iteration_seed(cfg.seed, self.iteration))
        flip_gen = torch.Generator().manual_seed(iteration_seed(cfg.seed, self.iteration, ranks.rank))
        local = phase.batch // ranks.world
        reals = []
        for _ in range(cfg.n_critic):
            idx = torch.randint(len(self.slices), (phase.batch,), generator=data_gen)
            idx = idx[ranks.rank * local:(ranks.rank + 1) * local]
            reals.append(real_batch(self.reals_dev, idx, flip_gen, phase.alpha, self.trainer.channels_last,
                                    upsample=self.trainer.model_cfg.upsample))
        return reals

    def train_one(self, stop: StopRequest | None) -> bool:
        """One iteration and what falls due after it; False when the run ends here."""
        t_iter = time.perf_counter()
        phase = schedule(self.images_seen, self.model_cfg.max_step, self.cfg)
        reals = self.real_batches(phase)
        self.images_seen += phase.batch
        self.iteration += 1
        self.pending.append(self.trainer.iterate(reals, phase.step, phase.alpha, phase.lr, self.images_seen,
                                                 phase.batch, self.iteration - 1))
        self.n_log += phase.batch

        after = schedule(self.images_seen, self.model_cfg.max_step, self.cfg)
        due = self.images_seen / 1000.0 - self.last_ckpt_kimg >= self.cfg.ckpt_every_kimg
        logging = self.iteration % self.cfg.log_every == 0
        if self.clock is not None and (logging or after.index != phase.index or due):
            after = self._refit()
        self.signalled = stop is not None and stop.agreed(self.ranks, self.device)
        stopping = self.images_seen >= self.stop_kimg * 1000 or self.signalled
        phase_end = after.index != phase.index or stopping
        # The losses are checked before anything is saved, so a checkpoint never holds a diverged
        # state; a stop always logs its last iteration, so stats.jsonl ends where the checkpoint does.
        if logging or phase_end or due:
            self._log(phase)
        if self.bar is not None:
            self.bar.update(min(phase.batch, round(self.stop_kimg * 1000) - self.bar.n))
        if phase_end or due:
            self._save(phase, after, stopping)
        if self.clock is not None:
            self.clock.record(phase.resolution, phase.batch, time.perf_counter() - t_iter)
        return not stopping

    def _stop_kimg(self) -> float:
        """Where this invocation stops: the schedule's end, or --stop-kimg before it."""
        total = total_kimg(self.model_cfg.max_step, self.cfg)
        return total if self.cfg.stop_kimg is None else min(self.cfg.stop_kimg, total)

    def _refit(self) -> Phase:
        """--minutes: re-fit the phases ahead to the speed measured so far (same on every rank)."""
        max_step = self.model_cfg.max_step
        self.cfg = self.trainer.cfg = _agreed(self.clock.refit(self.cfg, max_step, self.images_seen), self.ranks)
        self.stop_kimg = self._stop_kimg()
        if self.bar is not None:
            self.bar.total = round(self.stop_kimg * 1000)
        return schedule(self.images_seen, max_step, self.cfg)

    def _log(self, phase: Phase) -> None:
        """One stats.jsonl line: the interval's mean losses, after checking they are finite."""
        vals, bad = _reduce_logged(self.pending, self.ranks)
        if bad:
            at = self.iteration - len(self.pending) + 1 + bad[0]
            raise RunError(f"non-finite {bad[1]} at iteration {at} ({self.images_seen / 1000:.2f} kimg); "
                           f"the last good checkpoint is {self.ckpt_path} ({self.last_ckpt_kimg:.2f} kimg): "
                           "resume it with a lower --lr" + (" or --amp off" if self.trainer.amp != "off" else ""))
        self.pending = []
        if self.ranks.main and not self.warned_gp and vals.get("gp", 0.0) > GP_WARN:
            self.warned_gp = True  # once per invocation; finish() repeats the run's peak
            msg = penalty_warning(vals["gp"], self.images_seen / 1000)
            self._say(msg)
        cfg = self.cfg
        if cfg.spike_clip > 0 and cfg.critic_update_clip is None and vals.get("gp", 0.0) > cfg.spike_gp:
            # every rank sees the same reduced penalty, so all switch at the same iteration; the checkpoints'
            # config carries the cap, so a resumed run and the children keep it
            self.cfg = self.trainer.cfg = dataclasses.replace(cfg, critic_update_clip=cfg.spike_clip)
            if self.ranks.main:
                self._say(f"gradient penalty {vals['gp']:.1f} (above --spike-gp {cfg.spike_gp:g}): the critic's "
                          f"steps are capped at {cfg.spike_clip:g}x its lr from {self.images_seen / 1000:.2f} "
                          "kimg on (--spike-clip)")
                write_run_config(self.model_cfg, self.cfg, self.trainer, self.ranks)
        dt = time.perf_counter() - self.t_log
        row = {"iteration": self.iteration, "images_seen": self.images_seen, "kimg": round(self.images_seen / 1000, 4),
               "resolution": phase.resolution, "phase": phase.name, "alpha": round(phase.alpha, 5),
               "batch": phase.batch, "lr": phase.lr, **{k: round(v, 6) for k, v in vals.items()},
               "images_per_s": round(self.n_log / dt, 2) if dt > 0 else None}
        self.t_log, self.n_log = time.perf_counter(), 0
        if not self.ranks.main:
            return
        append_line(json.dumps(row), self.stats_path)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{phase.resolution}px {phase.name} a={phase.alpha:.2f} "
                                     f"D={vals['loss_d']:.3f} G={vals['loss_g']:.3f} "
                                     f"{row['images_per_s']} img/s", refresh=False)
        if self.iteration % self.cfg.plot_every == 0:
            plot_losses(self.stats_path, self.cfg.out, self.cfg.class_name)

    def _say(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)  # above the progress bar, not through it
        else:
            print(msg, file=sys.stderr)

    def _save(self, phase: Phase, after: Phase, stopping: bool) -> None:
        """The periodic checkpoint, and at a phase's end its sample grid (and a snapshot after a
        stable phase). The end of the run writes its own checkpoint in `finish`."""
        self.last_ckpt_kimg = self.images_seen / 1000.0
        if not self.ranks.main:
            return
        if not stopping:
            self.checkpoint(after).save(self.ckpt_path)
        if after.index != phase.index:
            _write_samples(self.trainer, self.grid_seeds, phase, self.cfg)
            if phase.name == "stable":
                self.checkpoint(phase).save(os.path.join(self.cfg.out, f"snapshot_{phase.resolution}x{phase.resolution}.pt"))
        if self.clock is not None:
            write_run_config(self.model_cfg, self.cfg, self.trainer, self.ranks)

    def checkpoint(self, phase: Phase) -> modules.Checkpoint:
        """Everything a resumed run needs, at `phase` (the one the next iteration is in)."""
        rng = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return modules.Checkpoint(class_name=self.cfg.class_name, model_config=self.model_cfg.to_dict(),
                                  train_config=dataclasses.asdict(self.cfg), images_seen=self.images_seen,
                                  iteration=self.iteration, step=phase.step, alpha=phase.alpha,
                                  elapsed_s=self.spent(), rng=rng, parent=self.parent, **self.trainer.state())

    # -- finish
    def finish(self, stop: StopRequest | None) -> None:
        """The last checkpoint (and at the end of the schedule the final snapshot and grid)."""
        if self.bar is not None:
            self.bar.close()
        if not self.ranks.main:
            return
        final = schedule(self.images_seen, self.model_cfg.max_step, self.cfg)
        state = self.checkpoint(final)
        state.save(self.ckpt_path)
        if final.done:
            res = final.resolution
            state.save(os.path.join(self.cfg.out, f"snapshot_{res}x{res}.pt"))
            _write_samples(self.trainer, self.grid_seeds, final, self.cfg, final=True)
        plot_losses(self.stats_path, self.cfg.out, self.cfg.class_name)
        peak = penalty_peak(read_stats(self.stats_path))
        if peak is not None and peak[0] > GP_WARN:
            print(penalty_warning(*peak), file=sys.stderr)
        if self.signalled:
            print(f"{stop.name}: stopped after iteration {self.iteration}, {self.images_seen} images seen "
                  f"({final.resolution}px); checkpoint: {self.ckpt_path}", file=sys.stderr)
        else:
            print(f"{'finished' if final.done else 'stopped'} at {self.images_seen / 1000:.2f} kimg, "
                  f"{final.resolution}px; checkpoint: {self.ckpt_path}")


def _reduce_logged(pending: list[dict], ranks: Dist) -> tuple[dict[str, float], tuple[int, str] | None]:
    """Mean of each logged loss over the interval and over processes (one sync), and the
    (index in `pending`, name) of the first non-finite loss, if any."""
    keys = list(pending[0])
    rows = torch.stack([torch.stack([p[k].float() for k in keys]) for p in pending])  # (iterations, losses)
    t = rows.mean(0)
    all_reduce_mean([t], ranks)
    bad = (~torch.isfinite(rows)).nonzero()
    first_bad = (int(bad[0, 0]), keys[int(bad[0, 1])]) if len(bad) else None
    if first_bad is None and not torch.isfinite(t).all():  # another rank diverged
        first_bad = (len(pending) - 1, keys[int((~torch.isfinite(t)).nonzero()[0, 0])])
    return dict(zip(keys, t.tolist())), first_bad


def _write_samples(trainer: Trainer, seeds: range, phase: Phase, cfg: TrainConfig,
                   final: bool = False) -> None:
    """A 9x9 grid of the EMA generator on seeds 0-80 (predict.py's latents), its noise from one stream seeded
    alike in every grid (not one fixed map for all 81: that would hide the variety the noise carries)."""
    imgs = modules.sample(trainer.G_ema, seeds, noise_mode="random", step=phase.step, alpha=1.0, batch=27)
    name = "final" if final else f"{phase.index:02d}_{phase.resolution}px_{phase.name}"
    modules.save_image_grid(imgs, os.path.join(cfg.out, "samples", f"{name}.png"), nrow=9)


# ----------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--class", dest="class_name", required=True, choices=[*core.CLASSES, "all"],
                   help="diagnosis class to train: AD (Alzheimer's disease) or NC (normal control); "
                        "'all' trains a parent on both pooled, for --init-from")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start a class AD or NC child from a --class all parent at its final resolution "
                        "(its networks, EMA and optimizers); the child trains the final phase on its class")
    p.add_argument("--data", default=None,
                   help="ADNI slice folder or NIfTI folder; omitted or 'demo' = built-in demo set")
    p.add_argument("--preset", choices=sorted(modules.PRESETS), default=None,
                   help="architecture and schedule: full (256px, GPU), quick (64px, CPU minutes), tiny (tests)")
    p.add_argument("--resolution", type=int, default=None,
                   help="final resolution (power of two); default: the preset's")
    p.add_argument("--out", default=None, help="run folder (default runs/<CLASS>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, choices=["auto"],
                   help="continue from <out>/checkpoint.pt; '--resume auto' continues it when it exists "
                        "and starts a new run when it does not (for requeued cluster jobs)")
    p.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    p.add_argument("--data-seed", type=int, default=None,
                   help="seed of the demo set (default: --seed); fix it to compare training seeds on one data set")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    _schedule_flags(p.add_argument_group("schedule (kimg = thousands of images seen)"))
    _architecture_flags(p.add_argument_group("architecture (overrides of the preset's; saved with the run)"))
    _speed_and_output_flags(p.add_argument_group("speed and output"))
    return p


def _schedule_flags(g) -> None:
    g.add_argument("--stable-kimg", type=core.res_map(float), default=None,
                   help="images per stabilisation phase: one number (every resolution's) or per resolution "
                        "like 4:2,8:4 (the others keep the preset's)")
    g.add_argument("--fade-kimg", type=core.res_map(float), default=None,
                   help="images per fade-in phase: one number (every resolution's) or per resolution like "
                        "8:2,16:4")
    g.add_argument("--final-kimg", type=float, default=None, help="stabilisation at the final resolution")
    g.add_argument("--stop-kimg", type=float, default=None,
                   help="stop with a checkpoint at this many kimg (resume later)")
    g.add_argument("--minutes", type=float, default=None,
                   help="fit the schedule to this many minutes of wall time on this machine: a short speed "
                        "probe per resolution, then every phase's kimg scaled by one factor (saved in "
                        "config.json; a resumed run keeps it)")
    g.add_argument("--batch", type=core.res_map(int), default=None,
                   help="global batch size, one number or per resolution like 4:64,8:64,16:32")
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate of both networks")
    g.add_argument("--lr-rampdown", type=float, default=None,
                   help="let the lr fall to 0 along a half cosine over this last fraction of the final phase "
                        "(0 = off)")
    g.add_argument("--n-critic", type=int, default=None, help="critic steps per generator step (default 1)")
    g.add_argument("--betas", type=_betas, default=None, metavar="B1,B2",
                   help="Adam's beta1,beta2 of both networks (default 0,0.99, ProGAN's and StyleGAN's)")
    g.add_argument("--critic-beta2", type=float, default=None,
                   help="the critic's Adam beta2 alone (default: --betas'); 0.9 calmed a critic about to blow up")
    g.add_argument("--critic-update-clip", type=float, default=None, metavar="C",
                   help="cap each critic weight's step at C times the critic's lr (update clipping; default off)")
    g.add_argument("--spike-clip", type=float, default=None, metavar="C",
                   help="once a logged gradient penalty passes --spike-gp, cap the critic's steps at C times its lr "
                        "for the rest of the run and in its children (quick: 3; 0 = off)")
    g.add_argument("--spike-gp", type=float, default=None, metavar="P",
                   help="the logged gradient penalty that turns --spike-clip on (default 5)")
    g.add_argument("--gp-lambda", type=float, default=None,
                   help="gradient-penalty weight (default 10; 5 in a quick child)")
    g.add_argument("--gp-every", type=int, default=None,
                   help="lazy regularisation: the gradient penalty on every k-th critic step, weighted by k")
    g.add_argument("--style-mixing", type=float, default=None,
                   help="style-mixing probability (default 0.9; 0 in a child of a quick parent)")
    g.add_argument("--mixing-active-only", action=argparse.BooleanOptionalAction, default=None,
                   help="draw the style-mixing crossover among the current resolution's layers only")
    g.add_argument("--reset-adam", action=argparse.BooleanOptionalAction, default=None,
                   help="clear Adam's moments when a new resolution starts (ProGAN)")
    g.add_argument("--ema-kimg", type=float, default=None, help="EMA half-life of the generator in kimg")
    g.add_argument("--mapping-lr-scale", type=float, default=None,
                   help="each Adam step of the mapping network times this, on top of --mapping-lr-mul (0 freezes "
                        "it; default 1, and 100 for a quick parent: its mapping then learns at lr x1)")
    g.add_argument("--critic-lr-scale", type=float, default=None,
                   help="the critic's learning rate is --lr times this (two time-scale update rule; quick: 3, else 1)")
    g.add_argument("--freeze-critic", type=int, default=None, metavar="K",
                   help="with --init-from: the critic's K highest resolutions keep the parent's weights (FreezeD; "
                        "default 0)")
    g.add_argument("--init-generator", choices=INIT_GENERATORS, default=None,
                   help="with --init-from: the generator that trains starts as the parent's trained one (raw, the "
                        "default) or as its EMA; the child's EMA starts as the parent's EMA either way")


def _architecture_flags(g) -> None:
    g.add_argument("--channels", type=core.res_map(int), default=None,
                   help="feature width in both networks: one number (every resolution's) or per resolution like "
                        "4:64,8:64,16:64,32:32,64:16 (the others keep the preset's)")
    g.add_argument("--critic-channels", type=core.res_map(int), default=None, metavar="RES:C,...",
                   help="the critic's width at these resolutions (others as --channels), like 64:16")
    g.add_argument("--noise-max-res", type=_noise_res, default=None,
                   help="noise inputs only up to this resolution, or 'all'")
    g.add_argument("--noise-min-res", type=_min_res, default=None, metavar="RES",
                   help="noise inputs only from this resolution up (default 4: every one; 8 = none on the 4x4 "
                        "constant, so the coarse layout comes from w alone)")
    g.add_argument("--skip-output", action=argparse.BooleanOptionalAction, default=None,
                   help="sum the upsampled to-image outputs of every resolution (StyleGAN2's skip generator)")
    g.add_argument("--upsample", choices=list(modules.UPSAMPLE_MODES), default=None,
                   help="the generator's 2x upsampling (default: the preset's, nearest in quick, bilinear in full and "
                        "tiny; nearest = ProGAN's, sharper edges)")
    g.add_argument("--to-image-kernel", type=int, choices=[1, 3], default=None,
                   help="kernel of the generator's to-image convolutions (default 1, as ProGAN and StyleGAN; 3 lets "
                        "the last layer sharpen edges)")
    g.add_argument("--mapping-lr-mul", type=float, default=None,
                   help="learning-rate multiplier of the mapping network (StyleGAN: 0.01)")
    g.add_argument("--mbstd-group", type=int, default=None, metavar="N",
                   help="the critic's minibatch-stddev group size (default: the preset's, 4 in quick and full; "
                        "a batch it does not divide uses the largest size below it that does)")


def _speed_and_output_flags(g) -> None:
    g.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default=None,
                   help="mixed-precision autocast (default auto: bf16 on a GPU with native bf16, else off; "
                        "off on every CPU, where bf16 children of the quick recipe collapsed)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout (default: on under autocast and on a CPU; off for fp32 on a GPU)")
    g.add_argument("--fp32-epilogue", action=argparse.BooleanOptionalAction, default=None,
                   help="under autocast, keep the critic's last layers (minibatch stddev, 4x4 conv, dense) and its "
                        "score in fp32 (default on; --no-fp32-epilogue autocasts them too, as runs did before)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 on a machine others are using)")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the networks")
    g.add_argument("--ckpt-every", dest="ckpt_every_kimg", type=float, default=None,
                   help="rewrite checkpoint.pt every this many kimg (also at every phase end)")
    g.add_argument("--log-every", type=int, default=None, help="iterations per stats.jsonl line")
    g.add_argument("--skip-bad", action="store_true", default=None, help="skip unreadable data files")
    g.add_argument("--demo-count", type=int, default=None, help="demo-set images per class")


# ModelConfig fields set by flags
MODEL_FLAGS = ("channels", "critic_channels", "noise_max_res", "noise_min_res", "skip_output", "mapping_lr_mul",
               "mbstd_group", "upsample", "to_image_kernel")


def _betas(text: str) -> tuple[float, float]:
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not two numbers like 0,0.99") from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise argparse.ArgumentTypeError(f"{text!r}: each beta must be in [0, 1)")
    return b1, b2


def _noise_res(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return _min_res(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a resolution (a power of two >= 4) nor 'all'") from None


def _min_res(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 4 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not a resolution (a power of two >= 4)")
    return value


def resolve_config(args: argparse.Namespace, saved: dict | None = None,
                   saved_model: dict | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Preset defaults, then the resumed run's saved config, then flags given on the command line.

    A resumed run keeps its checkpoint's architecture (`saved_model`) unless flags change it."""
    base = dict(saved or {})
    preset_name = args.preset or base.get("preset") or "full"
    if saved and args.preset and args.preset != saved.get("preset"):
        raise RunError(f"--preset {args.preset} differs from the resumed run's {saved.get('preset')}; "
                       "drop --preset or choose another --out")
    base["stop_kimg"] = None  # an early stop applies to one invocation, not to the resumed run
    if not saved:
        base = dataclasses.asdict(TrainConfig())
        base.update(TRAIN_PRESETS[preset_name])
        if args.class_name == "all" and args.mapping_lr_mul is None:  # (a chosen lr_mul is taken as the rate)
            base.update(PARENT_PRESETS.get(preset_name, {}))
        base["resolution"] = modules.PRESETS[preset_name].resolution
    if saved and args.minutes is not None and args.minutes != saved.get("minutes"):
        raise RunError(f"--minutes: the resumed run's schedule was fitted to {saved.get('minutes')} minutes "
                       "when it started; drop --minutes")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}  # (a config saved before a field existed lacks it)
    flags = {k: v for k, v in vars(args).items() if v is not None and k in fields and k not in ("resume",)}
    if isinstance(flags.get("batch"), int):
        flags["batch"] = {r: flags["batch"] for r in base["batch"]}
    elif isinstance(flags.get("batch"), dict):
        flags["batch"] = {**base["batch"], **flags["batch"]}
    for key in ("stable_kimg", "fade_kimg"):  # per-resolution values go to the *_by_res overrides
        if isinstance(flags.get(key), dict):
            flags[f"{key}_by_res"] = {**base.get(f"{key}_by_res", {}), **flags.pop(key)}
        elif key in flags:  # one number is every phase's, the preset's per-resolution values included
            flags[f"{key}_by_res"] = {}
    model_flags = {k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k, None) is not None}
    if model_flags.get("noise_max_res") == "all":
        model_flags["noise_max_res"] = None
    flags["model"] = {**base.get("model", {}), **model_flags}
    base.update(flags)
    base["preset"] = preset_name
    base["class_name"] = args.class_name
    if args.data is not None:
        base["data"] = args.data
    if args.out is None and not saved:
        base["out"] = os.path.join("runs", args.class_name)
    elif args.out is not None:
        base["out"] = args.out
    try:
        if saved_model is not None and not model_flags and args.resolution is None:
            model_cfg = ModelConfig.from_dict(saved_model)
        else:
            model_cfg = modules.preset(preset_name, resolution=base["resolution"], **base["model"])
    except ValueError as e:
        raise RunError(f"--resolution/--channels/--critic-channels/--mbstd-group: {e}") from None
    try:
        cfg = TrainConfig(**base)
    except ValueError as e:
        raise RunError(str(e)) from None
    missing = [r for r in model_cfg.resolutions if r not in cfg.batch]
    if missing:
        cfg.batch.update({r: cfg.batch[max(cfg.batch)] for r in missing})
    return model_cfg, cfg


def load_parent(args: argparse.Namespace) -> modules.Checkpoint:
    """The --init-from checkpoint, refused in one line unless it is a --class all parent that
    reached its final resolution and the child is of class AD or NC."""
    path = args.init_from
    if args.class_name == "all":
        raise RunError("--init-from starts a class AD or NC child; --class all trains the parent itself")
    parent = modules.Checkpoint.load(path)
    if parent.class_name != "all":
        raise RunError(f"--init-from {path} is a class {parent.class_name} checkpoint; a child starts from a "
                       "parent trained on both classes: python train.py --class all ...")
    model = ModelConfig.from_dict(parent.model_config)
    if parent.step != model.max_step or parent.alpha < 1.0 or not (parent.generator and parent.optim_g):
        raise RunError(f"--init-from {path} has not reached its final resolution ({4 * 2 ** parent.step}px, "
                       f"alpha {parent.alpha:.2f}); resume the parent until it has")
    return parent


def child_config(args: argparse.Namespace, parent: modules.Checkpoint) -> tuple[ModelConfig, TrainConfig]:
    """A child's configuration: the parent's schedule up to its final phase (so the child starts
    where that phase starts), its own class, run folder and final-phase budget (--final-kimg,
    default the preset's, or --minutes) and mapping-network step (the preset's, not a parent's
    PARENT_PRESETS value), the preset's CHILD_PRESETS values (quick: no style mixing, gradient-penalty
    weight 5), the parent's architecture, which flags may not change, and its demo set (data seed),
    whatever the child's --seed."""
    base = dict(parent.train_config)
    preset = base.get("preset", "full")
    if args.preset and args.preset != preset:
        raise RunError(f"--preset {args.preset}: {args.init_from} is a {preset} parent and a child keeps its "
                       "parent's architecture; drop --preset")
    # the parent's demo set, not one drawn from the child's --seed: a child of `--seed 1` must not
    # fine-tune on slices its parent never saw (--data-seed still chooses another on purpose)
    base["data_seed"] = core.demo_seed(base)
    base.update(class_name=args.class_name, init_from=args.init_from, minutes=args.minutes, probe_images_per_s={},
                fit_base=[], out=args.out or os.path.join("runs", args.class_name),
                final_kimg=TRAIN_PRESETS.get(preset, {}).get("final_kimg", TrainConfig.final_kimg),
                mapping_lr_scale=TRAIN_PRESETS.get(preset, {}).get("mapping_lr_scale", TrainConfig.mapping_lr_scale))
    base.update(CHILD_PRESETS.get(preset, {}))  # (flags still override these in resolve_config)
    model_cfg, cfg = resolve_config(args, base, parent.model_config)
    if model_cfg != ModelConfig.from_dict(parent.model_config):
        raise RunError(f"--init-from {args.init_from} has another architecture than these flags "
                       "(--preset/--resolution/--channels/...); a child keeps its parent's: drop them")
    return model_cfg, cfg


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    """The command line; `started` is when --minutes' clock starts (default: now)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    out = args.out or os.path.join("runs", args.class_name)
    ckpt_path = os.path.join(out, "checkpoint.pt")
    again = resume_command(argv, int(os.environ.get("WORLD_SIZE", "1")))
    rank = int(os.environ.get("RANK", "0"))
    stop = StopRequest().install()
    lock = RunLock(out)
    try:
        resume = os.path.exists(ckpt_path) if args.resume == "auto" else bool(args.resume)
        if resume and not os.path.exists(ckpt_path):
            raise RunError(f"--resume: {ckpt_path} does not exist; start the run without --resume "
                           "(or with --resume auto)")
        if not resume:  # bad flags and a wrong parent fail before the run folder is created
            parent = load_parent(args) if args.init_from else None
            model_cfg, cfg = child_config(args, parent) if parent else resolve_config(args)
        if rank == 0:  # one lock per run, held by rank 0 under torchrun
            lock.acquire()
        if not resume and os.path.exists(ckpt_path):
            raise RunError(f"{ckpt_path} already exists; pass --resume to continue it, or choose another --out")
        if resume:  # (a requeued child resumes: --init-from is then ignored)
            state, parent = modules.Checkpoint.load(ckpt_path), None
            model_cfg, cfg = resolve_config(args, state.train_config, state.model_config)
        else:
            state = None
        if args.resume == "auto":
            print(f"--resume auto: {'continuing ' + ckpt_path if resume else 'no checkpoint in ' + out + ', starting'}")
        core.set_threads(args.threads)
        if args.preset is None and not (state or parent) and not torch.cuda.is_available() and args.device in (None, "cpu"):
            print("note: no GPU found; the full preset (256x256) is slow on a CPU; "
                  "--preset quick trains a 64x64 demo in minutes", file=sys.stderr)
        run(model_cfg, cfg, resume_state=state, device_arg=args.device, started=started, stop=stop, parent=parent)
        if stop.signum is not None:
            if rank == 0:
                print(f"resume with: {again}", file=sys.stderr)
            return EXIT_CODES[stop.name]
    except core.UserError as e:  # RunError, CheckpointError, DataError
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission lost: atomic writes left the last checkpoint whole
        if e.filename is None:
            raise
        print(f"error: could not write {e.filename} ({e.strerror or e}); {ckpt_path} holds the last "
              f"checkpoint saved: free space or fix permissions, then: {again}", file=sys.stderr)
        return 2
    except Stopped as e:
        if rank == 0:
            print(f"{e}: stopped before training started; nothing new to save. Start again with: "
                  f"{again if os.path.exists(ckpt_path) else 'python train.py ' + shlex.join(argv)}",
                  file=sys.stderr)
        return EXIT_CODES[str(e)]
    finally:
        stop.restore()
        lock.release()
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(started=STARTED))
