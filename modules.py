"""Networks of the brain-MRI StyleGAN, and the one checkpoint format.

Everything that defines the architecture lives here; train.py, predict.py,
embedding.py and evaluate.py import it and never re-declare sizes.

    python modules.py                  # parameter counts of every preset
    python -c "import modules, torch; g = modules.load_generator('runs/AD/checkpoint.pt'); \
               print(g(torch.randn(4, g.z_dim)).shape)"

Vocabulary (StyleGAN, Karras et al. 2019; ProGAN, Karras et al. 2018):
- equalized learning rate: weights are stored N(0, 1) and scaled at run time by
  gain / sqrt(fan_in), so Adam sees every layer at the same scale;
- the mapping network turns z into w; per layer, AdaIN turns w into a per-channel
  scale and bias of instance-normalised features;
- the generator and the critic grow 4x4 -> R; while a new resolution fades in,
  its output is blended with the (up- or down-sampled) one of the previous
  resolution by ``alpha``.

Resolution steps: step 0 is 4x4, step s is 4 * 2**s.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from core import UserError, first_line, save_image_atomic, write_bytes_atomic

GAIN = math.sqrt(2.0)  # He gain for layers followed by a (leaky) ReLU
LRELU_SLOPE = 0.2
CHECKPOINT_FORMAT = "brain-stylegan"
CHECKPOINT_VERSION = 1


# ----------------------------------------------------------------------------- config

UPSAMPLE_MODES = ("bilinear", "nearest")  # ModelConfig.upsample

@dataclass
class ModelConfig:
    """Every architecture choice; saved in each checkpoint and rebuilt from it."""
    resolution: int = 256             # final image size, a power of two >= 4
    z_dim: int = 512                  # latent z size
    w_dim: int = 512                  # intermediate latent w size
    mapping_layers: int = 8           # depth of the mapping network
    mapping_lr_mul: float = 0.01      # learning-rate multiplier of the mapping network
    w_avg_beta: float = 0.995         # decay of the running average of w (truncation trick)
    image_channels: int = 1           # 1 = grayscale MRI
    channels: dict[int, int] = field(default_factory=dict)  # feature width per resolution
    critic_channels: dict[int, int] = field(default_factory=dict)  # the critic's widths where they differ
    mbstd_group: int = 4              # minibatch-stddev group size of the critic
    noise_max_res: int | None = None  # noise inputs only up to this resolution (None = at every one)
    noise_min_res: int = 4            # noise inputs only from this resolution up (4 = at every one)
    skip_output: bool = False         # sum the upsampled to-image outputs of all resolutions (StyleGAN2's
                                      # skip generator); False = only the newest one (ProGAN / StyleGAN1)
    upsample: str = "bilinear"        # the generator's 2x upsampling: 'bilinear' (smooth) or 'nearest'
                                      # (ProGAN's; the 3x3 conv after it decides how sharp edges stay)
    to_image_kernel: int = 1          # the to-image convolutions' kernel: 1 (ProGAN / StyleGAN) or 3 (the last
                                      # layer can then sharpen an edge across its neighbours)

    def __post_init__(self):
        # JSON turns int keys into strings; accept both.
        self.channels = {int(k): int(v) for k, v in self.channels.items()}
        self.critic_channels = {int(k): int(v) for k, v in self.critic_channels.items()}
        if self.resolution < 4 or self.resolution & (self.resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {self.resolution}")
        missing = [r for r in self.resolutions if r not in self.channels]
        if missing:
            raise ValueError(f"channels has no width for resolution(s) {missing}")
        for name in ("noise_min_res", "noise_max_res"):
            value = getattr(self, name)
            if value is not None and (value < 4 or value & (value - 1)):
                raise ValueError(f"{name} must be a resolution (a power of two >= 4), got {value}")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.to_image_kernel not in (1, 3):
            raise ValueError(f"to_image_kernel must be 1 or 3, got {self.to_image_kernel}")
        if self.mbstd_group < 1:
            raise ValueError(f"mbstd_group (minibatch-stddev group size) must be at least 1, got {self.mbstd_group}")
        extra = sorted(set(self.critic_channels) - set(self.resolutions))
        if extra:
            raise ValueError(f"critic_channels names resolution(s) {extra}, not among this model's "
                             f"{self.resolutions}; give the critic's widths for those only")

    @property
    def critic_widths(self) -> dict[int, int]:
        """The critic's feature width per resolution: `channels`, with `critic_channels` where given."""
        return {**self.channels, **self.critic_channels}

    @property
    def max_step(self) -> int:
        return int(math.log2(self.resolution)) - 2

    @property
    def resolutions(self) -> list[int]:
        return resolutions_up_to(self.resolution)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def resolutions_up_to(resolution: int) -> list[int]:
    """4, 8, ... up to `resolution` (a power of two >= 4)."""
    return [4 * 2 ** s for s in range(int(math.log2(resolution)) - 1)]


def _widths(resolution: int, top: int) -> dict[int, int]:
    """`top` channels up to 16x16, then halving at each resolution, never below 8."""
    out, r = {}, 4
    while r <= resolution:
        out[r] = top if r <= 16 else max(8, out[r // 2] // 2)
        r *= 2
    return out


PRESETS: dict[str, ModelConfig] = {
    # The original design: 512 wide up to 16x16, then 256, 128, 64, 32.
    "full": ModelConfig(resolution=256, z_dim=512, w_dim=512, channels=_widths(256, 512)),
    # 64x64, narrow: a demo that trains on 2 CPU cores in minutes. Nearest-neighbour upsampling: against
    # bilinear in the paired demo recipe at equal wall time it lowered SWD in all six class-seed pairs of three
    # seeds (0.80-0.93x, at the 64-px level), kept the class difference at least as large, and moved 8 of 12
    # biomarker means toward real; precision fell by 0.002-0.037 in all six (docs/evaluation.md, rounds 55-57).
    # Those rounds still blended fading reals bilinearly; since 587ec64 reals fade with this mode too (round 85).
    "quick": ModelConfig(resolution=64, z_dim=128, w_dim=128, mapping_layers=4,
                         channels={4: 64, 8: 64, 16: 32, 32: 16, 64: 8}, upsample="nearest"),
    # 16x16 with a handful of channels, for tests and smoke checks.
    "tiny": ModelConfig(resolution=16, z_dim=16, w_dim=16, mapping_layers=2,
                        channels={4: 16, 8: 16, 16: 8}, mbstd_group=2),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A copy of a preset, with `overrides` applied (e.g. resolution=128; channels are merged
    into the preset's, per resolution)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    d = PRESETS[name].to_dict()
    overrides = dict(overrides)
    r = overrides.get("resolution", d["resolution"])

    def widths(given) -> dict[int, int]:  # one number = that width at every resolution up to r
        if isinstance(given, int):
            return dict.fromkeys(resolutions_up_to(max(r, 4)), given)
        return {int(k): int(v) for k, v in given.items()}
    chans = {**d["channels"], **widths(overrides.pop("channels", {}))}
    while max(chans) < r:  # extend by halving, so a larger size is still well-defined
        chans[max(chans) * 2] = max(8, chans[max(chans)] // 2)
    d["channels"] = {k: v for k, v in chans.items() if k <= r}
    d["critic_channels"] = {**d["critic_channels"], **widths(overrides.pop("critic_channels", {}))}
    d.update(overrides)
    return ModelConfig.from_dict(d)


# ----------------------------------------------------------------------------- layers

class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate.

    The stored weight is N(0, 1/lr_mul); forward uses weight * gain * lr_mul / sqrt(fan_in),
    so the effective weight has std gain / sqrt(fan_in) and its learning rate is lr_mul.
    """

    def __init__(self, in_features: int, out_features: int, gain: float = GAIN,
                 lr_mul: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = gain * lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.bias_gain if self.bias_gain != 1.0 else self.bias
        if x.ndim == 2:  # the gain rides in the GEMM's alpha: no weight-sized multiply per call
            return torch.addmm(bias, x, self.weight.t(), alpha=self.weight_gain)
        return F.linear(x, self.weight * self.weight_gain, bias)


class EqualConv2d(nn.Module):
    """Square 2D convolution with equalized learning rate ('same' padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = GAIN):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = gain / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, input_grad_only: bool = False) -> torch.Tensor:
        """input_grad_only=True: this call is differentiated with respect to x only, with
        create_graph, and then again (the gradient penalty); see _ConvForPenalty."""
        weight = self.weight * self.weight_gain
        if not input_grad_only:
            return F.conv2d(x, weight, self.bias, padding=self.padding)
        bias = self.bias
        if torch.is_autocast_enabled(x.device.type):  # autocast does not reach inside a Function
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
        return _ConvForPenalty.apply(x, weight, bias, self.padding)


class _ConvForPenalty(torch.autograd.Function):
    """conv2d for the gradient penalty's critic call, whose scores are differentiated with
    respect to the input (create_graph) and the result again.

    Through F.conv2d, d/dW of grad_x D(x) is ATen's convolution double backward, which
    computes it as a convolution whose kernel is the whole feature map: oneDNN runs that
    several times slower than its backward-weights kernel. Here the first backward (grad
    mode on, as create_graph sets it) returns the input gradient only, as conv_transpose2d,
    whose own backward is the fast kernel. The second backward (grad mode off) returns
    input, weight and bias gradients from one convolution_backward: the terms that reach
    the weights through the activations, e.g. via the minibatch stddev.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        p = ctx.padding
        if torch.is_grad_enabled():  # the penalty's first backward: only grad_x is asked for
            return F.conv_transpose2d(grad, weight, padding=p), None, None, None
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[0]], [1, 1], [p, p], [1, 1], False, [0, 0], 1,
            list(ctx.needs_input_grad[:3]))
        return gx, gw, gb, None


class PixelNorm(nn.Module):
    """Normalise each feature vector to unit average square (ProGAN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def upsample2x(x: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """2x upsampling: bilinear (StyleGAN's low-pass choice) or nearest neighbour (ProGAN's)."""
    if mode == "nearest":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling: the same area filter the data set uses for lower resolutions."""
    return F.avg_pool2d(x, 2)


def fade(low: torch.Tensor, high: torch.Tensor, alpha: float) -> torch.Tensor:
    """The fade-in blend low + alpha * (high - low), in the wider of the two dtypes.

    Under CUDA autocast the two paths can arrive in different dtypes: on an H200 (torch 2.11) the
    2x upsampling ran in fp32 while the convolution before it ran in bf16/fp16, and torch.lerp
    refuses mixed dtypes, so every --amp bf16/fp16 run on a GPU stopped at its first fade-in."""
    dtype = torch.promote_types(low.dtype, high.dtype)
    return torch.lerp(low.to(dtype), high.to(dtype), alpha)


class MappingNetwork(nn.Module):
    """z -> w: PixelNorm, then `layers` equalized linear layers with LeakyReLU 0.2."""

    def __init__(self, z_dim: int, w_dim: int, layers: int = 8, lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.w_avg_beta = z_dim, w_dim, w_avg_beta
        dims = [z_dim] + [w_dim] * layers
        self.norm = PixelNorm()
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=lr_mul) for a, b in zip(dims, dims[1:]))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.norm(z)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
        return x

    @torch.no_grad()
    def update_w_avg(self, w: torch.Tensor) -> None:
        """Track the average w during training (used by truncation)."""
        self.w_avg.lerp_(w.detach().float().mean(dim=0), 1.0 - self.w_avg_beta)


class AdaIN(nn.Module):
    """Instance norm, then per-channel scale and bias computed from w (scale starts at 1)."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.scale = EqualLinear(w_dim, channels, gain=1.0, bias_init=1.0)
        self.bias = EqualLinear(w_dim, channels, gain=1.0, bias_init=0.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # (Measured: one var_mean + addcmul is slower than the native instance norm, both
        # ways and in every layout, on CPU.)
        scale = self.scale(w)[:, :, None, None]
        bias = self.bias(w)[:, :, None, None]
        y = self.norm(x)
        if x.is_contiguous(memory_format=torch.channels_last):
            # the native instance norm returns NCHW whatever its input; handing that to the next
            # channels_last convolution costs a layout conversion there, forward and backward (the same
            # values either way: measured at 64x64, the quick preset's fp32 CPU iteration ran 1.22x faster)
            y = y.contiguous(memory_format=torch.channels_last)
        return scale * y + bias


class NoiseInjection(nn.Module):
    """Add one channel of Gaussian noise, scaled per channel by a learned weight (starts at 0).

    noise_mode: 'random' draws fresh noise, 'const' uses the fixed buffer (reproducible
    inference), 'none' adds nothing.
    """

    def __init__(self, channels: int, resolution: int, seed: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution, generator=g))

    def forward(self, x: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "const":
            noise = self.noise_const.to(x.dtype)
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        return torch.addcmul(x, noise, self.weight.to(x.dtype))  # one pass; stays in x's dtype


class StyledLayer(nn.Module):
    """(optional 2x upsample) -> conv 3x3 -> noise -> LeakyReLU -> AdaIN(w).

    With conv=False (the first layer, on the learned constant) the conv is skipped; with
    noise=False the layer has no noise input (ModelConfig.noise_min_res, noise_max_res).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 seed: int, conv: bool = True, upsample: bool = False, noise: bool = True,
                 upsample_mode: str = "bilinear"):
        super().__init__()
        self.upsample, self.upsample_mode = upsample, upsample_mode
        self.conv = EqualConv2d(in_channels, out_channels, 3) if conv else None
        self.noise = NoiseInjection(out_channels, resolution, seed) if noise else None
        self.adain = AdaIN(out_channels, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if self.upsample:
            x = upsample2x(x, self.upsample_mode)
        if self.conv is not None:
            x = self.conv(x)
        if self.noise is not None:
            x = self.noise(x, noise_mode)
        x = F.leaky_relu(x, LRELU_SLOPE)
        return self.adain(x, w)


# ----------------------------------------------------------------------------- generator

class Generator(nn.Module):
    """Style-based progressive generator.

    g(z) -> images (N, C, R, R) at the generator's current `step` and `alpha`; in eval
    mode the output is clamped to [-1, 1], in training mode it is the raw linear output.
    Two styled layers per resolution, so there are 2 * (max_step + 1) style inputs.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.max_step = cfg.max_step
        self.num_ws = 2 * (self.max_step + 1)
        self.step, self.alpha = self.max_step, 1.0  # what g(z) produces by default
        self.class_name: str | None = None
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers,
                                      cfg.mapping_lr_mul, cfg.w_avg_beta)
        c4 = cfg.channels[4]
        self.const = nn.Parameter(torch.ones(1, c4, 4, 4))
        self.blocks = nn.ModuleList()
        self.to_image = nn.ModuleList()
        for s, res in enumerate(cfg.resolutions):
            cin, cout = cfg.channels[res // 2] if s else c4, cfg.channels[res]
            noise = res >= cfg.noise_min_res and (cfg.noise_max_res is None or res <= cfg.noise_max_res)
            self.blocks.append(nn.ModuleList([
                StyledLayer(cin, cout, cfg.w_dim, res, seed=2 * s, conv=s > 0, upsample=s > 0, noise=noise,
                            upsample_mode=cfg.upsample),
                StyledLayer(cout, cout, cfg.w_dim, res, seed=2 * s + 1, noise=noise),
            ]))
            self.to_image.append(EqualConv2d(cout, cfg.image_channels, cfg.to_image_kernel, gain=1.0))

    @property
    def resolution(self) -> int:
        """Side of the images g(z) produces (the trained resolution after load_generator)."""
        return 4 * 2 ** self.step

    def truncate(self, w: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        """Move w toward the running average: psi = 1 leaves it, psi = 0 gives w_avg."""
        if psi == 1.0:
            return w
        return self.mapping.w_avg.to(w.dtype).lerp(w, psi)

    def mix(self, w1: torch.Tensor, w2: torch.Tensor, crossover: int) -> torch.Tensor:
        """Per-layer styles (N, num_ws, w_dim): w1 for layers < crossover, w2 from there on."""
        ws = w1[:, None].repeat(1, self.num_ws, 1)
        ws[:, crossover:] = w2[:, None]
        return ws

    def synthesis(self, ws: torch.Tensor, step: int | None = None, alpha: float | None = None,
                  noise_mode: str = "random") -> torch.Tensor:
        """ws: (N, w_dim) for one style everywhere, or (N, num_ws, w_dim) per layer."""
        step = self.step if step is None else step
        alpha = self.alpha if alpha is None else alpha
        assert 0 <= step <= self.max_step, f"step {step} outside 0..{self.max_step}"
        if ws.ndim == 2:
            ws = ws[:, None].expand(-1, self.num_ws, -1)
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        fading = step > 0 and alpha < 1.0
        prev = img = None
        for s in range(step + 1):
            if s == step and fading:
                prev = x
            a, b = self.blocks[s]
            x = b(a(x, ws[:, 2 * s], noise_mode), ws[:, 2 * s + 1], noise_mode)
            if self.cfg.skip_output:  # every resolution adds its detail to the upsampled sum so far
                out = self.to_image[s](x)
                if s == step and fading:
                    out = out * alpha
                img = out if img is None else upsample2x(img, self.cfg.upsample) + out
        if self.cfg.skip_output:
            return img
        img = self.to_image[step](x)
        if prev is not None:  # fade-in: blend with the upsampled previous-resolution image
            skip = upsample2x(self.to_image[step - 1](prev), self.cfg.upsample)
            img = fade(skip, img, alpha)
        return img

    def forward(self, z: torch.Tensor, step: int | None = None, alpha: float | None = None, *,
                psi: float = 1.0, z_mix: torch.Tensor | None = None, crossover: int | None = None,
                noise_mode: str = "random", update_w_avg: bool = False,
                clamp: bool | None = None) -> torch.Tensor:
        """z (N, z_dim) -> images (N, C, r, r), r = 4 * 2**step.

        z_mix with crossover mixes styles (z for layers < crossover, z_mix after).
        """
        w = self.mapping(z)
        if update_w_avg:
            self.mapping.update_w_avg(w)
        w = self.truncate(w, psi)
        if z_mix is not None:
            w2 = self.truncate(self.mapping(z_mix), psi)
            w = self.mix(w, w2, self.num_ws // 2 if crossover is None else crossover)
        img = self.synthesis(w, step, alpha, noise_mode)
        if clamp is None:
            clamp = not self.training
        if clamp:
            img = img.clamp(-1.0, 1.0)
        return img


# ----------------------------------------------------------------------------- critic

class MinibatchStdDev(nn.Module):
    """Append one channel: the average (over features and pixels) of the per-group stddev.

    Groups are runs of consecutive images, so a batch made of [reals; fakes] (each a
    multiple of the group size) never mixes the two in one group.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:  # largest group size <= group_size that divides the batch
            g -= 1
        y = x.float().reshape(n // g, g, c, h, w)           # (groups, members, ...)
        y = (y - y.mean(dim=1, keepdim=True)).pow(2).mean(dim=1)  # variance over each group
        y = (y + 1e-8).sqrt().mean(dim=(1, 2, 3))           # (n/g,) one value per group
        y = y.to(x.dtype).repeat_interleave(g)              # member i -> group i // g
        return torch.cat([x, y.view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


class Critic(nn.Module):
    """Progressive WGAN critic: from-image 1x1 per resolution, conv blocks with 2x2
    average-pool downsampling, fade-in by alpha, minibatch stddev, scalar score.

    fp32_epilogue: under autocast, the epilogue (minibatch stddev, the 4x4 conv and the two
    dense layers) still computes in fp32, and so does the score. It costs little (4x4 maps)
    and keeps the score exact: in bf16 a score near 100 is rounded to a step of 0.5, and the
    output bias's gradient (-1/N per real, +1/N per fake, + 2 drift D/N per real) rounds to
    its first two terms, which cancel. StyleGAN2-ADA likewise keeps its low resolutions in
    fp32. It did not stop bf16 collapses of the quick recipe (docs/evaluation.md, rounds 53-54).
    """

    def __init__(self, cfg: ModelConfig, fp32_epilogue: bool = True):
        super().__init__()
        self.cfg = cfg
        self.fp32_epilogue = fp32_epilogue
        self.max_step = cfg.max_step
        ch = cfg.critic_widths
        self.from_image = nn.ModuleList(EqualConv2d(cfg.image_channels, ch[r], 1) for r in cfg.resolutions)
        # blocks[s] maps resolution 4*2**s to half of it (s >= 1); blocks[0] is unused (final block instead)
        self.blocks = nn.ModuleList([nn.Identity()] + [
            nn.ModuleList([EqualConv2d(ch[r], ch[r], 3), EqualConv2d(ch[r], ch[r // 2], 3)])
            for r in cfg.resolutions[1:]
        ])
        c4 = ch[4]
        self.mbstd = MinibatchStdDev(cfg.mbstd_group)
        self.final_conv = EqualConv2d(c4 + 1, c4, 3)
        self.final_fc = EqualLinear(c4 * 16, c4)
        self.final_out = EqualLinear(c4, 1, gain=1.0)

    def _block(self, s: int, x: torch.Tensor, input_grad_only: bool) -> torch.Tensor:
        conv1, conv2 = self.blocks[s]
        x = F.leaky_relu(conv1(x, input_grad_only), LRELU_SLOPE)
        x = F.leaky_relu(conv2(x, input_grad_only), LRELU_SLOPE)
        return downsample2x(x)

    def _from_image(self, s: int, img: torch.Tensor, input_grad_only: bool) -> torch.Tensor:
        return F.leaky_relu(self.from_image[s](img, input_grad_only), LRELU_SLOPE)

    def forward(self, img: torch.Tensor, step: int, alpha: float = 1.0, input_grad_only: bool = False) -> torch.Tensor:
        """img (N, C, r, r) with r = 4 * 2**step -> scores (N,).

        input_grad_only=True for the gradient penalty's call: the scores are then differentiated
        with respect to img only (create_graph), and the result again; the convolutions
        take a path whose double backward is fast (_ConvForPenalty).
        """
        assert img.shape[-1] == 4 * 2 ** step, f"image size {img.shape[-1]} does not match step {step}"
        x = self._from_image(step, img, input_grad_only)
        for s in range(step, 0, -1):
            x = self._block(s, x, input_grad_only)
            if s == step and alpha < 1.0:  # fade-in: blend with the downsampled image's path
                x = fade(self._from_image(s - 1, downsample2x(img), input_grad_only), x, alpha)
        if self.fp32_epilogue and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self._epilogue(x.float(), input_grad_only)
        return self._epilogue(x, input_grad_only)

    def _epilogue(self, x: torch.Tensor, input_grad_only: bool) -> torch.Tensor:
        x = self.mbstd(x)
        x = F.leaky_relu(self.final_conv(x, input_grad_only), LRELU_SLOPE)
        x = F.leaky_relu(self.final_fc(x.flatten(1)), LRELU_SLOPE)
        return self.final_out(x).squeeze(1)


# ----------------------------------------------------------------------------- latents and images

def latents_for_seeds(seeds, z_dim: int) -> torch.Tensor:
    """One z per seed, each from its own generator: seed k gives the same z in every
    script and batch (train.py's sample grids and predict.py use seeds 0..80)."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s)))
                        for s in seeds])


@torch.no_grad()
def styles(g: Generator, seeds, psi: float = 1.0) -> torch.Tensor:
    """w (N, w_dim) of each seed's z, truncated by psi; mapped one at a time, so batch-independent."""
    z = latents_for_seeds(seeds, g.z_dim).to(g.const.device)
    return torch.cat([g.truncate(g.mapping(zi[None]), psi) for zi in z])


@torch.no_grad()
def synthesize(g: Generator, ws: torch.Tensor, noise_seeds, noise_mode: str = "random",
               step: int | None = None, alpha: float | None = None) -> torch.Tensor:
    """ws (N, w_dim) or (N, num_ws, w_dim) -> images (N, C, R, R), one at a time so an image never
    depends on its batch; with random noise, image i draws its noise from torch seed noise_seeds[i]
    (the caller's random state is left as it was)."""
    device = g.const.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        images = []
        for w, seed in zip(ws, noise_seeds):
            torch.manual_seed(int(seed))
            images.append(g.synthesis(w[None], step, alpha, noise_mode=noise_mode))
    return torch.cat(images)


@torch.no_grad()
def sample(g: Generator, seeds, *, psi: float = 1.0, noise_mode: str = "random", step: int | None = None,
           alpha: float | None = None, batch: int | None = None, noise_seed: int | None = None) -> torch.Tensor:
    """The one way from seeds to images, (N, C, R, R) in [-1, 1] on g's device: image k comes
    from the z of seeds[k] (`latents_for_seeds`), truncated by psi, at g's own resolution and
    alpha unless step/alpha are given (train.py's grids, predict.py, evaluate.py, embedding.py).

    batch None: one image at a time, with random noise from torch seed seeds[k], so an image is the
    same whatever else is drawn with it. batch B: B images per call (fast), their random noise from
    one stream seeded once with `noise_seed` (default seeds[0]) in batch order."""
    if batch is None:
        return synthesize(g, styles(g, seeds, psi), seeds, noise_mode, step, alpha)
    device = g.const.device
    z = latents_for_seeds(seeds, g.z_dim).to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seeds[0]) if noise_seed is None else noise_seed)
        return torch.cat([g(zb, step, alpha, psi=psi, noise_mode=noise_mode, clamp=False)
                          for zb in z.split(batch)])


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (N, C, H, W) -> uint8 [0, 255] on the CPU."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_image_grid(images: torch.Tensor, path: str, nrow: int, border: int = 1, border_value: int = 160) -> None:
    """Write images in [-1, 1] as one grayscale PNG grid with a thin grey border between cells
    (grey, not black, so that cells stay apart on MRI's black background)."""
    from PIL import Image  # only the scripts that write images need Pillow

    pix = to_uint8(images)[:, 0]  # (N, H, W), first channel (grayscale)
    n, h, w = pix.shape
    ncol = math.ceil(n / nrow)
    grid = torch.full((border + ncol * (h + border), border + nrow * (w + border)), border_value, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        y, x = border + r * (h + border), border + c * (w + border)
        grid[y:y + h, x:x + w] = pix[i]
    save_image_atomic(Image.fromarray(grid.numpy(), mode="L"), path)


# ----------------------------------------------------------------------------- checkpoints

class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or not of this project; str() is one line."""


def save_checkpoint(state: dict, path: str) -> None:
    """Write `state` atomically (see `write_bytes_atomic`).

    It is serialised in memory first: torch.save into a file hides a write error (a full
    disk) behind a RuntimeError, while a plain write raises the OSError that says what happened.
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(buf.getbuffer(), path)


@dataclass
class Checkpoint:
    """One training state on disk: plain types and tensors only (read with weights_only=True),
    tagged with CHECKPOINT_FORMAT and CHECKPOINT_VERSION. train.py writes it; everything that
    reads one goes through `Checkpoint.load` (or `load_generator`).

    What generating images needs is required; the training fields default to empty, so a
    generator-only checkpoint (as the tests build) loads too, but cannot be resumed."""
    class_name: str
    model_config: dict                      # ModelConfig.to_dict(): rebuilds both networks
    step: int                               # resolution index of the saved phase (0 = 4x4)
    alpha: float                            # fade-in weight of that resolution
    generator_ema: dict                     # state_dict of the EMA generator (the one to sample)
    generator: dict = field(default_factory=dict)
    critic: dict = field(default_factory=dict)
    optim_g: dict = field(default_factory=dict)
    optim_d: dict = field(default_factory=dict)
    scaler: dict = field(default_factory=dict)  # fp16 loss scaler
    train_config: dict = field(default_factory=dict)  # train.TrainConfig as a dict
    images_seen: int = 0
    iteration: int = 0
    elapsed_s: float = 0.0                  # wall time spent so far (--minutes)
    rng: dict = field(default_factory=dict)  # {"torch": CPU generator state, "cuda": [per device]}
    parent: dict = field(default_factory=dict)  # --init-from: {"path", "sha256", "images_seen"} of the parent

    def to_dict(self) -> dict:
        """The plain dict on disk (shallow: the tensors are shared, not copied)."""
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                **{f.name: getattr(self, f.name) for f in fields(self)}}

    def save(self, path: str) -> None:
        save_checkpoint(self.to_dict(), path)

    @classmethod
    def from_dict(cls, state, path: str = "checkpoint") -> "Checkpoint":
        """Check the tag, version and field types; CheckpointError (one line) otherwise."""
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a checkpoint of this project (no '{CHECKPOINT_FORMAT}' format tag)")
        if state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"checkpoint {path} has format version {state.get('version')}, "
                                  f"this code reads version {CHECKPOINT_VERSION}")
        known = {f.name: f for f in fields(cls)}
        values = {k: v for k, v in state.items() if k in known}
        kinds = {"str": str, "dict": dict, "int": int, "float": (int, float)}
        for name, f in known.items():
            if name not in values and f.default is f.default_factory is MISSING:
                raise CheckpointError(f"checkpoint {path} has no '{name}'; re-train or pick another file")
            if name in values and not isinstance(values[name], kinds[str(f.type).split()[0]]):
                raise CheckpointError(f"checkpoint {path} has a damaged '{name}' "
                                      f"({type(values[name]).__name__}); re-train or pick another file")
        return cls(**values)

    @classmethod
    def load(cls, path: str, map_location="cpu") -> "Checkpoint":
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint {path} does not exist")
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # truncated, corrupt, or not a torch file at all
            raise CheckpointError(f"checkpoint {path} is unreadable ({first_line(e)}); "
                                  "re-train or pick another file") from None
        return cls.from_dict(state, path)

    def ema_generator(self, device: str | torch.device = "cpu", path: str = "checkpoint") -> Generator:
        """The EMA generator, in eval mode at the saved resolution and alpha, `class_name` set."""
        try:
            g = Generator(ModelConfig.from_dict(self.model_config))
            g.load_state_dict(self.generator_ema)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {path} has a damaged generator ({type(e).__name__}: {first_line(e)}); "
                                  "re-train or pick another file") from None
        g.step, g.alpha, g.class_name = self.step, float(self.alpha), self.class_name
        return g.to(device).eval().requires_grad_(False)


def shared_parent(a: Checkpoint, b: Checkpoint) -> str | None:
    """The sha256 of the parent checkpoint two children were fine-tuned from, or None when they
    were not fine-tuned from one parent (from scratch, or from different parents)."""
    sha_a, sha_b = a.parent.get("sha256"), b.parent.get("sha256")
    return sha_a if sha_a and sha_a == sha_b else None


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """A checked checkpoint as the plain dict that is on disk (see `Checkpoint`)."""
    return Checkpoint.load(path, map_location).to_dict()


def load_generator(path: str, device: str | torch.device = "cpu") -> Generator:
    """Rebuild the EMA generator of a checkpoint from the checkpoint's own config.

    The result is in eval mode, set to the trained resolution and fade-in alpha, with
    `class_name` set; g(z) gives images in [-1, 1] of shape (N, C, g.resolution, g.resolution).
    """
    return Checkpoint.load(path).ema_generator(device, path)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    print(f"{'preset':<7} {'res':>4} {'z/w':>8} {'generator':>12} {'mapping':>10} {'critic':>12}")
    for name, cfg in PRESETS.items():
        g, d = Generator(cfg), Critic(cfg)
        print(f"{name:<7} {cfg.resolution:>4} {cfg.z_dim:>4}/{cfg.w_dim:<3} {count_parameters(g):>12,} "
              f"{count_parameters(g.mapping):>10,} {count_parameters(d):>12,}")


if __name__ == "__main__":
    main()
