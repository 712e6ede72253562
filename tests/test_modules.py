"""Networks and checkpoint format of modules.py, on the tiny preset (CPU)."""
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import modules
from conftest import ROOT
from modules import (AdaIN, Critic, EqualConv2d, EqualLinear, Generator, MinibatchStdDev,
                     ModelConfig, NoiseInjection, preset)


@pytest.fixture
def cfg():
    return preset("tiny")


@pytest.fixture
def nets(cfg):
    torch.manual_seed(0)
    return Generator(cfg), Critic(cfg)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_shapes_at_every_step(nets, cfg, alpha):
    g, d = nets
    z = torch.randn(4, cfg.z_dim)
    for step in range(cfg.max_step + 1):
        img = g(z, step=step, alpha=alpha)
        res = 4 * 2 ** step
        assert img.shape == (4, 1, res, res)
        score = d(img, step=step, alpha=alpha)
        assert score.shape == (4,)
        assert torch.isfinite(score).all()


def test_presets_match_the_design():
    full = preset("full")
    assert (full.resolution, full.z_dim, full.w_dim, full.image_channels) == (256, 512, 512, 1)
    assert full.channels == {4: 512, 8: 512, 16: 512, 32: 256, 64: 128, 128: 64, 256: 32}
    assert preset("quick").resolution == 64
    assert preset("tiny").resolution in (16, 32)
    assert preset("tiny", resolution=32).channels[32] == 8  # extended by halving (floor 8)


def test_config_round_trips_through_json_keys(cfg):
    d = cfg.to_dict()
    d["channels"] = {str(k): v for k, v in d["channels"].items()}  # as json.load gives them
    assert ModelConfig.from_dict(d) == cfg


def test_bad_config_raises():
    with pytest.raises(ValueError, match="power of two"):
        ModelConfig(resolution=48, channels={4: 8})
    with pytest.raises(ValueError, match="no width"):
        ModelConfig(resolution=16, channels={4: 8, 8: 8})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_generator_fade_in_at_alpha_zero_is_upsampled_previous(nets, cfg):
    g, _ = nets
    z = torch.randn(3, cfg.z_dim)
    for step in range(1, cfg.max_step + 1):
        faded = g(z, step=step, alpha=0.0, noise_mode="const")
        prev = g(z, step=step - 1, alpha=1.0, noise_mode="const")
        expected = F.interpolate(prev, scale_factor=2, mode="bilinear", align_corners=False)
        torch.testing.assert_close(faded, expected)
        # and alpha = 1 is not the same thing (the new block contributes)
        assert not torch.allclose(g(z, step=step, alpha=1.0, noise_mode="const"), expected)


def test_critic_fade_in_at_alpha_zero_is_previous_on_downsampled(nets, cfg):
    _, d = nets
    x = torch.randn(4, 1, cfg.resolution, cfg.resolution)
    step = cfg.max_step
    faded = d(x, step=step, alpha=0.0)
    torch.testing.assert_close(faded, d(F.avg_pool2d(x, 2), step=step - 1, alpha=1.0))
    assert not torch.allclose(d(x, step=step, alpha=1.0), faded)


def test_equalized_lr_effective_std():
    torch.manual_seed(0)
    lin = EqualLinear(256, 512, gain=math.sqrt(2), lr_mul=0.01)
    eff = lin.weight * lin.weight_gain
    assert eff.std().item() == pytest.approx(math.sqrt(2) / math.sqrt(256), rel=0.02)
    assert lin.weight.std().item() == pytest.approx(100.0, rel=0.02)  # stored N(0, 1/lr_mul)
    conv = EqualConv2d(64, 128, 3, gain=1.0)
    eff = conv.weight * conv.weight_gain
    assert eff.std().item() == pytest.approx(1.0 / math.sqrt(64 * 9), rel=0.02)
    assert conv.weight.std().item() == pytest.approx(1.0, rel=0.02)


def test_equal_linear_bias_init_and_lr_mul():
    lin = EqualLinear(4, 3, lr_mul=0.01, bias_init=1.0)
    out = lin(torch.zeros(2, 4))
    torch.testing.assert_close(out, torch.ones(2, 3))


@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 6)])
def test_equal_linear_is_a_linear_map_with_the_scaled_weight(shape):
    """2D inputs take the addmm path (gain in the GEMM's alpha), others F.linear: same map."""
    torch.manual_seed(0)
    lin = EqualLinear(6, 4, gain=math.sqrt(2), lr_mul=0.01, bias_init=0.5)
    x = torch.randn(shape)
    expected = x @ (lin.weight * lin.weight_gain).T + lin.bias * lin.bias_gain
    torch.testing.assert_close(lin(x), expected)
    lin(x).sum().backward()  # weight gradient = gain * sum over rows of x
    torch.testing.assert_close(lin.weight.grad, lin.weight_gain * x.reshape(-1, 6).sum(0).expand(4, 6))


def test_minibatch_stddev_matches_hand_computation():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 2)
    out = MinibatchStdDev(group_size=2)(x)
    assert out.shape == (4, 4, 2, 2)
    torch.testing.assert_close(out[:, :3], x)
    # groups of 2 are consecutive images: (0, 1) and (2, 3)
    for i, j in [(0, 1), (2, 3)]:
        pair = torch.stack([x[i], x[j]])
        std = torch.sqrt(((pair - pair.mean(0)) ** 2).mean(0) + 1e-8).mean()
        assert torch.allclose(out[i, 3], std.expand(2, 2))
        assert torch.allclose(out[j, 3], std.expand(2, 2))


def test_minibatch_stddev_keeps_reals_and_fakes_apart():
    torch.manual_seed(0)
    mbstd = MinibatchStdDev(group_size=4)
    real, fake = torch.randn(8, 2, 4, 4), 5 * torch.randn(8, 2, 4, 4)
    both = mbstd(torch.cat([real, fake]))
    torch.testing.assert_close(both[:8], mbstd(real))
    torch.testing.assert_close(both[8:], mbstd(fake))


def test_minibatch_stddev_odd_batch_uses_a_divisor():
    torch.manual_seed(1)
    x = torch.randn(6, 2, 4, 4)
    out = MinibatchStdDev(group_size=4)(x)  # 4 does not divide 6: groups of 3, images (0, 1, 2) and (3, 4, 5)
    assert out.shape == (6, 3, 4, 4)
    for first in (0, 3):
        group = x[first:first + 3]
        std = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(out[first:first + 3, 2], std.expand(3, 4, 4))


def test_noise_starts_at_zero_weight_so_has_no_effect(nets, cfg):
    g, _ = nets
    assert all((m.weight == 0).all() for m in g.modules() if isinstance(m, NoiseInjection))
    z = torch.randn(2, cfg.z_dim)
    torch.testing.assert_close(g(z, noise_mode="random"), g(z, noise_mode="none"))


def test_noise_is_scaled_by_weight_not_added():
    layer = NoiseInjection(channels=2, resolution=4, seed=0)
    x = torch.zeros(1, 2, 4, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.0, 2.0]).view(1, 2, 1, 1))
    out = layer(x, noise_mode="const")
    torch.testing.assert_close(out[0, 0], torch.zeros(4, 4))
    torch.testing.assert_close(out[0, 1], 2.0 * layer.noise_const[0, 0])


def test_bf16_autocast_keeps_activations_bf16(cfg):
    """Under bf16 autocast every layer after the first computes in bf16: an fp32 parameter
    (the noise weight) must not promote the activations back to fp32. (The critic's fp32
    epilogue is switched off here; the next test checks it.)"""
    g, d = Generator(cfg), Critic(cfg, fp32_epilogue=False)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.1)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((type(m).__name__, o.dtype)))
             for m in list(g.modules()) + list(d.modules())
             if isinstance(m, (NoiseInjection, AdaIN, EqualConv2d, MinibatchStdDev))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        score = d(g(torch.randn(4, cfg.z_dim), cfg.max_step, 0.5), cfg.max_step, 0.5)
    for h in hooks:
        h.remove()
    assert score.dtype == torch.bfloat16
    # the first styled layer works on the fp32 learned constant (no convolution before it)
    assert [dt for _, dt in seen[:2]] == [torch.float32, torch.float32]
    promoted = [name for name, dt in seen[2:] if dt != torch.bfloat16]
    assert not promoted and len(seen) > 10


def test_critic_epilogue_and_score_stay_fp32_under_autocast(cfg):
    """By default the critic's blocks run in bf16 under autocast and its epilogue (minibatch
    stddev, 4x4 conv, dense layers) in fp32; the score matches the all-fp32 critic closely."""
    torch.manual_seed(0)
    d = Critic(cfg)
    img = torch.randn(4, 1, cfg.resolution, cfg.resolution)
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: seen.update({name: o.dtype}))
             for name, m in d.named_modules() if isinstance(m, (EqualConv2d, EqualLinear, MinibatchStdDev))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        score = d(img, cfg.max_step, 0.5)
    for h in hooks:
        h.remove()
    assert score.dtype == torch.float32
    epilogue = {"mbstd", "final_conv", "final_fc", "final_out"}
    assert all(seen[n] == torch.float32 for n in epilogue)
    body = [n for n in seen if n not in epilogue]
    assert body and all(seen[n] == torch.bfloat16 for n in body)
    with torch.no_grad():
        exact = d(img, cfg.max_step, 0.5)
    torch.testing.assert_close(score.detach(), exact, rtol=0.05, atol=0.05)


def test_adain_at_init_is_instance_norm():
    torch.manual_seed(0)
    ada = AdaIN(3, 8)
    x = torch.randn(2, 3, 5, 5) * 4 + 7
    out = ada(x, torch.zeros(2, 8))  # w = 0 -> scale = bias_init 1, bias 0
    assert out.mean(dim=(2, 3)).abs().max() < 1e-5
    assert out.var(dim=(2, 3), unbiased=False).sub(1).abs().max() < 1e-3


def test_adain_keeps_the_channels_last_layout_and_values():
    """The native instance norm returns NCHW; AdaIN hands an NHWC input's result on as NHWC (no layout
    conversion in the next convolution), with the same numbers as the NCHW path, forward and backward."""
    torch.manual_seed(0)
    ada = AdaIN(6, 8)
    x = torch.randn(2, 6, 5, 5) * 3 + 1
    w = torch.randn(2, 8)
    x_nchw = x.clone().requires_grad_()
    x_nhwc = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    out_nchw, out_nhwc = ada(x_nchw, w), ada(x_nhwc, w)
    assert out_nhwc.is_contiguous(memory_format=torch.channels_last)
    assert out_nchw.is_contiguous()
    torch.testing.assert_close(out_nhwc, out_nchw)
    g = torch.randn_like(out_nchw)
    (out_nchw * g).sum().backward()
    (out_nhwc * g).sum().backward()
    torch.testing.assert_close(x_nhwc.grad, x_nchw.grad)


def test_truncation_psi_zero_gives_w_avg(nets, cfg):
    g, _ = nets
    with torch.no_grad():
        g.mapping.w_avg.copy_(torch.randn(cfg.w_dim))
    w = g.mapping(torch.randn(5, cfg.z_dim))
    torch.testing.assert_close(g.truncate(w, psi=0.0), g.mapping.w_avg.expand(5, -1))
    torch.testing.assert_close(g.truncate(w, psi=1.0), w)
    # psi = 0 makes every z give the same image (with fixed noise)
    imgs = g(torch.randn(3, cfg.z_dim), psi=0.0, noise_mode="const")
    torch.testing.assert_close(imgs[0], imgs[1])


def test_w_avg_tracks_mapping_output(nets, cfg):
    g, _ = nets
    z = torch.randn(64, cfg.z_dim)
    for _ in range(2000):
        g(z, step=0, update_w_avg=True)
    torch.testing.assert_close(g.mapping.w_avg, g.mapping(z).mean(0), atol=1e-3, rtol=1e-3)


def test_style_mixing(nets, cfg):
    g, _ = nets
    z1, z2 = torch.randn(2, cfg.z_dim), torch.randn(2, cfg.z_dim)
    ws = g.mix(g.mapping(z1), g.mapping(z2), crossover=2)
    assert ws.shape == (2, g.num_ws, cfg.w_dim)
    torch.testing.assert_close(ws[:, 1], g.mapping(z1))
    torch.testing.assert_close(ws[:, 2], g.mapping(z2))
    a = g(z1, z_mix=z2, crossover=0, noise_mode="const")
    torch.testing.assert_close(a, g(z2, noise_mode="const"))
    full_crossover = g(z1, z_mix=z2, crossover=g.num_ws, noise_mode="const")
    torch.testing.assert_close(full_crossover, g(z1, noise_mode="const"))


def test_eval_output_is_clamped(nets, cfg):
    g, _ = nets
    with torch.no_grad():
        for m in g.to_image:
            m.bias.fill_(5.0)
    z = torch.randn(2, cfg.z_dim)
    assert g(z).max() > 1.0  # training mode: raw output
    g.eval()
    out = g(z)
    assert out.min() >= -1.0 and out.max() <= 1.0


def _active(name: str, step: int) -> bool:
    """Which parameters train at `step` while it fades in (alpha < 1)."""
    parts = name.split(".")
    top, idx = parts[0], int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    if top in ("blocks",):
        return idx <= step if idx else True
    if top in ("to_image", "from_image"):
        return idx in (step - 1, step)  # both resolutions feed the blend
    return True  # mapping, const, the critic's final block


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_penalty_path_gives_the_same_gradient_penalty_and_weight_gradients(cfg, alpha):
    """Critic(input_grad_only=True) changes how the double backward is computed, not what: the same
    grad_x D(x), the same penalty, the same gradients for every parameter (float64)."""
    torch.manual_seed(0)
    d = Critic(cfg).double()
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    out = {}
    for penalty in (False, True):
        d.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(d(xi, cfg.max_step, alpha, input_grad_only=penalty).sum(), xi, create_graph=True)
        gp = (g.flatten(1).norm(dim=1) - 1).pow(2).mean()
        gp.backward()
        out[penalty] = g.detach(), gp.detach(), {n: p.grad for n, p in d.named_parameters() if p.grad is not None}
    (g0, gp0, gr0), (g1, gp1, gr1) = out[False], out[True]
    torch.testing.assert_close(g1, g0)
    torch.testing.assert_close(gp1, gp0)
    convs = {n for n in gr0 if n.endswith("weight") and gr0[n].dim() == 4}
    assert convs and convs <= set(gr1)  # every convolution weight gets its gradient
    for n in gr0:
        torch.testing.assert_close(gr1.get(n, torch.zeros_like(gr0[n])), gr0[n], rtol=1e-7, atol=1e-10)


def test_gradients_reach_exactly_the_active_layers(cfg):
    torch.manual_seed(0)
    g, d = Generator(cfg), Critic(cfg)
    with torch.no_grad():  # noise weights start at 0; make them matter so their grads are non-zero
        for m in g.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.1)
    step = 1  # 8x8 fading in
    img = g(torch.randn(4, cfg.z_dim), step=step, alpha=0.5)
    d(img, step=step, alpha=0.5).sum().backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            has_grad = p.grad is not None and p.grad.abs().sum() > 0
            assert has_grad == _active(name, step), f"{type(net).__name__}.{name}: grad={has_grad}"


def _checkpoint(g, d, cfg, step, alpha) -> modules.Checkpoint:
    return modules.Checkpoint(class_name="AD", model_config=cfg.to_dict(), step=step, alpha=alpha,
                              generator_ema=g.state_dict(), generator=g.state_dict(), critic=d.state_dict(),
                              images_seen=123, rng={"torch": torch.get_rng_state()})


def test_checkpoint_round_trip_gives_identical_images(nets, cfg, tmp_path):
    g, d = nets
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, NoiseInjection):
                m.weight.normal_()
        g.mapping.w_avg.normal_()
    path = tmp_path / "checkpoint.pt"
    _checkpoint(g, d, cfg, step=1, alpha=0.25).save(str(path))
    torch.load(path, weights_only=True)  # plain types only
    g2 = modules.load_generator(str(path))
    assert (g2.z_dim, g2.w_dim, g2.resolution, g2.class_name) == (cfg.z_dim, cfg.w_dim, 8, "AD")
    assert not g2.training
    z = torch.randn(3, cfg.z_dim)
    g.eval()
    torch.testing.assert_close(g2(z, noise_mode="const"), g(z, step=1, alpha=0.25, noise_mode="const"))
    torch.manual_seed(5)
    a = g2(z)
    torch.manual_seed(5)
    b = g(z, step=1, alpha=0.25)
    torch.testing.assert_close(a, b)  # same random noise too
    assert g2.mapping(z).shape == (3, cfg.w_dim)
    assert g2(z).min() >= -1 and g2(z).max() <= 1


def test_save_is_atomic_and_leaves_no_temp(nets, cfg, tmp_path):
    g, d = nets
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"old")
    _checkpoint(g, d, cfg, 2, 1.0).save(str(path))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]

    class Boom:  # torch.save fails half-way: the old file must survive, no temp left
        def __reduce__(self):
            raise RuntimeError("boom")
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        modules.save_checkpoint({"x": Boom()}, str(path))
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    with pytest.raises(modules.CheckpointError, match="does not exist"):
        modules.load_generator(str(tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(modules.CheckpointError, match="unreadable") as e:
        modules.load_generator(str(bad))
    assert "\n" not in str(e.value)
    damaged = tmp_path / "damaged.pt"
    fields = {"format": modules.CHECKPOINT_FORMAT, "version": modules.CHECKPOINT_VERSION, "class_name": "AD",
              "model_config": preset("tiny").to_dict(), "generator_ema": {}, "step": 2, "alpha": 1.0}
    torch.save(fields, damaged)
    with pytest.raises(modules.CheckpointError, match="damaged generator") as e:
        modules.load_generator(str(damaged))
    assert "\n" not in str(e.value)
    for broken, match in (({"step": None}, "damaged 'step'"), ({"class_name": 3}, "damaged 'class_name'"),
                          ({"version": 0}, "format version 0")):
        torch.save({**fields, **broken}, damaged)
        with pytest.raises(modules.CheckpointError, match=match):
            modules.load_generator(str(damaged))
    torch.save({k: v for k, v in fields.items() if k != "alpha"}, damaged)
    with pytest.raises(modules.CheckpointError, match="has no 'alpha'"):
        modules.load_generator(str(damaged))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(modules.CheckpointError, match="not a checkpoint of this project"):
        modules.load_generator(str(other))


def test_parameter_count_command():
    out = subprocess.run([sys.executable, "modules.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {"full", "quick", "tiny"}
    g_tiny = int(lines["tiny"].split()[3].replace(",", ""))
    assert g_tiny == modules.count_parameters(Generator(preset("tiny")))


def test_latents_for_seeds_do_not_depend_on_batch():
    a = modules.latents_for_seeds([3, 7, 11], 16)
    b = modules.latents_for_seeds([11], 16)
    torch.testing.assert_close(a[2], b[0])
    assert not torch.allclose(a[0], a[1])


def test_image_grid_layout(tmp_path):
    from PIL import Image
    imgs = torch.linspace(-1, 1, 6).view(6, 1, 1, 1).expand(6, 1, 4, 4)
    path = tmp_path / "grid.png"
    modules.save_image_grid(imgs, str(path), nrow=3, border=1)
    grid = torch.from_numpy(__import__("numpy").array(Image.open(path)))
    assert grid.shape == (1 + 2 * 5, 1 + 3 * 5)  # 2 rows, 3 columns of 4 px + 1 px borders
    assert grid[1, 1] == 0 and grid[6, 11] == 255  # first cell -1 -> 0, last cell +1 -> 255
    assert (grid[0] == 160).all() and (grid[:, 5] == 160).all()  # grey borders


# ----------------------------------------------------------------------------- recipe options

def test_skip_output_sums_upsampled_images_and_fades_in_continuously():
    cfg = preset("tiny", skip_output=True)
    torch.manual_seed(0)
    g = Generator(cfg)
    z = torch.randn(3, cfg.z_dim)
    w = g.mapping(z)
    # by hand: each resolution's to-image output added to the upsampled sum of the ones before
    x, total = g.const.expand(3, -1, -1, -1), None
    for s in range(cfg.max_step + 1):
        a, b = g.blocks[s]
        x = b(a(x, w, "const"), w, "const")
        out = g.to_image[s](x)
        total = out if total is None else F.interpolate(total, scale_factor=2, mode="bilinear",
                                                        align_corners=False) + out
    torch.testing.assert_close(g(z, noise_mode="const", clamp=False), total)
    for step in range(1, cfg.max_step + 1):  # alpha 0 = the previous resolution, upsampled
        prev = g(z, step=step - 1, alpha=1.0, noise_mode="const", clamp=False)
        torch.testing.assert_close(g(z, step=step, alpha=0.0, noise_mode="const", clamp=False),
                                   F.interpolate(prev, scale_factor=2, mode="bilinear", align_corners=False))


def test_noise_min_res_removes_noise_inputs_below_it():
    cfg = preset("tiny", noise_min_res=8)
    g = Generator(cfg).eval()
    assert [layer.noise is None for block in g.blocks for layer in block] == [True, True, False, False, False, False]
    for block in g.blocks:  # make every remaining noise input count
        for layer in block:
            if layer.noise is not None:
                layer.noise.weight.data.fill_(1.0)
    z = torch.randn(2, cfg.z_dim)
    torch.manual_seed(1)
    a = g(z, step=0, noise_mode="random")
    torch.manual_seed(2)
    b = g(z, step=0, noise_mode="random")
    torch.testing.assert_close(a, b)  # the 4x4 image is w's alone
    torch.manual_seed(2)
    assert not torch.allclose(a[:, :, :1, :1], g(z, step=1, noise_mode="random")[:, :, :1, :1])  # 8x8 noise counts
    for bad in (2, 12):  # below 4, or between two resolutions (12 would act as 16 without saying so)
        with pytest.raises(ValueError, match="noise_min_res"):
            preset("tiny", noise_min_res=bad)
        with pytest.raises(ValueError, match="noise_max_res"):
            preset("tiny", noise_max_res=bad)
    old = {k: v for k, v in preset("tiny").to_dict().items() if k != "noise_min_res"}
    assert ModelConfig.from_dict(old).noise_min_res == 4  # a config saved before the option: noise everywhere


def test_noise_max_res_removes_noise_inputs_above_it():
    cfg = preset("tiny", noise_max_res=4)
    g = Generator(cfg)
    assert [layer.noise is None for block in g.blocks for layer in block] == [False, False, True, True, True, True]
    for p in g.parameters():  # make every remaining noise input count
        if p.shape[:1] == (1,) and p.ndim == 4 and p.shape[2:] == (1, 1):
            p.data.fill_(1.0)
    z = torch.randn(2, cfg.z_dim)
    torch.manual_seed(1)
    a = g(z, noise_mode="random")
    torch.manual_seed(2)
    b = g(z, noise_mode="random")
    assert not torch.allclose(a, b)  # the 4x4 noise still varies the image
    # a config saved before these options existed loads as before: noise everywhere, no skips
    old = {k: v for k, v in preset("tiny").to_dict().items() if k not in ("noise_max_res", "skip_output")}
    restored = ModelConfig.from_dict(old)
    assert restored.noise_max_res is None and restored.skip_output is False
    assert all(layer.noise is not None for block in Generator(restored).blocks for layer in block)


def test_preset_merges_channel_overrides():
    cfg = preset("quick", channels={64: 16})
    assert cfg.channels == {**preset("quick").channels, 64: 16}
    assert preset("tiny", resolution=32).channels[32] == 8  # extended by halving, floor 8
    with pytest.raises(ValueError, match="channels"):
        ModelConfig(resolution=8, channels={4: 8})
    assert preset("tiny", channels=12).channels == {4: 12, 8: 12, 16: 12}  # one number: every resolution


def test_critic_channels_widen_only_the_critic_and_survive_a_checkpoint(tmp_path):
    base, cfg = preset("tiny"), preset("tiny", critic_channels={16: 12})
    assert cfg.channels == base.channels and cfg.critic_widths == {**base.channels, 16: 12}
    g, d = Generator(cfg), Critic(cfg)
    # the generator is untouched; the critic's 16-px from-image and first conv are 12 wide, its second conv
    # maps 12 channels down to the 8-px width
    assert modules.count_parameters(g) == modules.count_parameters(Generator(base))
    assert d.from_image[2].weight.shape == (12, 1, 1, 1)
    assert d.blocks[2][0].weight.shape == (12, 12, 3, 3)
    assert d.blocks[2][1].weight.shape == (base.channels[8], 12, 3, 3)
    assert d(torch.randn(3, 1, 16, 16), step=2, alpha=0.5).shape == (3,)
    again = ModelConfig.from_dict({**cfg.to_dict(), "critic_channels": {"16": 12}})  # JSON's string keys
    assert again == cfg and Critic(again).blocks[2][0].weight.shape == (12, 12, 3, 3)
    with pytest.raises(ValueError, match=r"critic_channels names resolution\(s\) \[64\]"):
        preset("tiny", critic_channels={64: 16})


def test_sample_is_the_one_way_from_seeds_to_images(nets, cfg):
    g, _ = nets
    g = g.eval()
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.5)  # noise that shows in the images
    alone = modules.sample(g, [5])
    together = modules.sample(g, [3, 5, 9])
    torch.testing.assert_close(together[1:2], alone, rtol=0, atol=0)  # an image never depends on its company
    assert not torch.equal(together[0], together[1])
    # by hand: z of seed 5, its own noise stream, the synthesis at g's resolution
    torch.manual_seed(5)
    by_hand = g.synthesis(g.mapping(modules.latents_for_seeds([5], cfg.z_dim)))
    torch.testing.assert_close(alone, by_hand)
    # batched: the same z's, noise from one stream; constant noise gives the per-image result exactly
    const = modules.sample(g, [3, 5, 9], noise_mode="const")
    torch.testing.assert_close(modules.sample(g, [3, 5, 9], noise_mode="const", batch=2), const, rtol=1e-5, atol=1e-5)
    state = torch.get_rng_state()
    a = modules.sample(g, range(6), batch=4, noise_seed=11)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
    torch.testing.assert_close(modules.sample(g, range(6), batch=4, noise_seed=11), a, rtol=0, atol=0)
    assert modules.sample(g, [1, 2], step=1, alpha=0.5, noise_mode="none").shape == (2, 1, 8, 8)



def test_to_image_kernel_3_convolves_neighbours_and_old_configs_keep_1x1():
    cfg = preset("tiny", to_image_kernel=3)
    torch.manual_seed(0)
    g = Generator(cfg).eval()
    assert [tuple(t.weight.shape) for t in g.to_image] == [(1, c, 3, 3) for c in cfg.channels.values()]
    # by hand: the last layer's features through the 3x3 kernel (equalized-LR gain 1 / sqrt(C * 9), zero padding)
    features = {}
    g.blocks[-1][1].register_forward_hook(lambda m, i, out: features.setdefault("x", out))
    z = torch.randn(2, cfg.z_dim)
    img = g(z, noise_mode="const")
    x, t = features["x"], g.to_image[-1]
    c = x.shape[1]
    expected = torch.zeros_like(img) + t.bias.view(1, -1, 1, 1)
    padded = F.pad(x, (1, 1, 1, 1))
    for dy in range(3):
        for dx in range(3):
            w = t.weight[0, :, dy, dx].view(1, c, 1, 1) / math.sqrt(c * 9)
            expected += (padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]] * w).sum(1, keepdim=True)
    torch.testing.assert_close(img, expected.clamp(-1, 1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="to_image_kernel must be 1 or 3"):
        preset("tiny", to_image_kernel=5)
    old = {k: v for k, v in preset("tiny").to_dict().items() if k != "to_image_kernel"}
    assert ModelConfig.from_dict(old).to_image_kernel == 1  # configs saved before the option


def test_nearest_upsampling_copies_pixels_and_is_used_by_the_whole_generator():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = torch.tensor([[[[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0],
                               [3.0, 3.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]]]])
    torch.testing.assert_close(modules.upsample2x(x, "nearest"), expected)
    # bilinear (the default) blends neighbours: one pixel right of the corner is 0.75 * 1 + 0.25 * 2
    assert modules.upsample2x(x)[0, 0, 0, 1].item() == pytest.approx(1.25)
    cfg = preset("tiny", upsample="nearest")
    torch.manual_seed(0)
    g = Generator(cfg).eval()
    assert all(block[0].upsample_mode == "nearest" for block in g.blocks[1:])
    z = torch.randn(2, cfg.z_dim)
    faded = g(z, step=1, alpha=0.0, noise_mode="const")  # the fade-in skip is upsampled the same way
    prev = g(z, step=0, alpha=1.0, noise_mode="const")
    torch.testing.assert_close(faded, prev.repeat_interleave(2, 2).repeat_interleave(2, 3))
    # the same weights with bilinear upsampling draw a different image
    bil = Generator(preset("tiny")).eval()
    bil.load_state_dict(g.state_dict())
    assert not torch.allclose(bil(z, noise_mode="const"), g(z, noise_mode="const"))
    with pytest.raises(ValueError, match="upsample must be one of"):
        preset("tiny", upsample="bicubic")
    old = {k: v for k, v in preset("tiny").to_dict().items() if k != "upsample"}
    assert ModelConfig.from_dict(old).upsample == "bilinear"  # configs saved before the option
    # the quick preset draws with nearest now; a quick checkpoint saved before that keeps its bilinear
    quick_old = {k: v for k, v in preset("quick").to_dict().items() if k != "upsample"}
    assert preset("quick").upsample == "nearest" and ModelConfig.from_dict(quick_old).upsample == "bilinear"


@pytest.mark.parametrize("net", ["generator", "critic"])
def test_fade_in_blends_paths_of_different_dtypes(cfg, net, monkeypatch):
    """Under CUDA autocast the 2x resampling ran in fp32 while the convolutions ran in bf16 (seen on an
    H200), and torch.lerp refused the mix: every bf16/fp16 GPU run stopped at its first fade-in. Here the
    CPU's bf16 autocast gets the same mix by making the resampling return fp32; the blend must take it
    and give what the all-fp32 network gives, within bf16's error."""
    torch.manual_seed(0)
    g, d = Generator(cfg), Critic(cfg, fp32_epilogue=False)
    z, img = torch.randn(4, cfg.z_dim), torch.randn(4, 1, cfg.resolution, cfg.resolution)
    run = (lambda: g(z, cfg.max_step, 0.5, noise_mode="none")) if net == "generator" else \
        (lambda: d(img, cfg.max_step, 0.5))
    with torch.no_grad():
        exact = run()
    name = "upsample2x" if net == "generator" else "downsample2x"
    plain = getattr(modules, name)
    monkeypatch.setattr(modules, name, lambda x, *a: plain(x, *a).float())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = run()
    assert torch.isfinite(mixed).all() and mixed.shape == exact.shape
    torch.testing.assert_close(mixed.float(), exact, rtol=0.1, atol=0.1)


def test_fade_promotes_to_the_wider_dtype():
    low, high = torch.zeros(3, dtype=torch.float32), torch.full((3,), 2.0, dtype=torch.bfloat16)
    out = modules.fade(low, high, 0.25)
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((3,), 0.5))
