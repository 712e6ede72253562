"""train.py: schedule, losses against hand computations, a tiny run's outputs, exact resume,
refusals, NaN stop, kill-and-resume, and two-process data parallel on CPU."""
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
import types

import pytest
import torch

import dataset
import modules
import train
import training
from conftest import ROOT, TINY_TRAIN, train_main



def tiny_cfg(**kw) -> train.TrainConfig:
    # fp32 unless a test asks for autocast (--amp auto is fp32 on a CPU, but the tests should not depend on it):
    # bf16 rounding blurs what they compare (an lr_mul 0.01 x 100 mapping against lr_mul 1; the critic's output
    # bias, whose only gradient, the drift term's, bf16 rounds away unless the epilogue is fp32)
    base = {**train.TRAIN_PRESETS["tiny"], "preset": "tiny", "resolution": 16, "amp": "off", **kw}
    return train.TrainConfig(**base)


# ----------------------------------------------------------------------------- schedule

def test_schedule_walks_phases_with_linear_fade():
    cfg = tiny_cfg(stable_kimg=1.0, fade_kimg=2.0, final_kimg=3.0, batch={4: 8, 8: 4, 16: 2},
                   lr=0.01, lr_by_res={16: 0.02})
    s = lambda n: train.schedule(n, 2, cfg)  # noqa: E731
    assert (s(0).step, s(0).alpha, s(0).batch, s(0).name) == (0, 1.0, 8, "stable")
    assert (s(999).step, s(999).name) == (0, "stable")
    assert (s(1000).step, s(1000).alpha, s(1000).name, s(1000).batch) == (1, 0.0, "fade", 4)
    assert s(1500).alpha == pytest.approx(0.25)
    assert s(2500).alpha == pytest.approx(0.75)
    assert (s(3000).name, s(3000).alpha) == ("stable", 1.0)
    assert (s(4000).step, s(4000).name, s(4000).lr) == (2, "fade", 0.02)
    assert s(5000).alpha == pytest.approx(0.5)
    assert (s(6000).name, s(6000).done) == ("stable", False)
    assert train.total_kimg(2, cfg) == pytest.approx(9.0)
    assert s(9000).done and s(9000).step == 2
    assert [p.index for p in map(s, [0, 1000, 3000, 4000, 6000])] == [0, 1, 2, 3, 4]


def test_lr_rampdown_falls_along_a_half_cosine_over_the_final_phase_only():
    cfg = tiny_cfg(stable_kimg=1.0, fade_kimg=1.0, final_kimg=4.0, batch={4: 8, 8: 4, 16: 2}, lr=0.01,
                   lr_rampdown=0.5)
    lr = lambda n: train.schedule(n, 2, cfg).lr  # noqa: E731
    assert lr(2500) == 0.01 and lr(4000) == 0.01  # earlier phases, and the first half of the final one
    assert lr(6000) == pytest.approx(0.01)        # the ramp starts half-way into the final phase (kimg 4-8)
    assert lr(7000) == pytest.approx(0.005)       # half-way down the ramp: (1 + cos(pi / 2)) / 2
    assert lr(6500) == pytest.approx(0.01 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr(8000) == pytest.approx(0.0) and lr(9000) == pytest.approx(0.0)
    assert train.schedule(6000, 2, dataclasses.replace(cfg, lr_rampdown=0.0)).lr == 0.01
    with pytest.raises(ValueError, match="lr-rampdown"):
        tiny_cfg(lr_rampdown=1.5)


def test_phase_boundaries_survive_float_noise_in_fitted_lengths():
    # A parent's --minutes fit once gave these phase lengths; their float sum is 9.892000000000001, and
    # the child's start (image 9892) was still read as the end of the 64-px fade, which stopped the child.
    cfg = tiny_cfg(stable_kimg=0.8053, final_kimg=2.8715, batch={4: 4, 8: 4, 16: 4, 32: 4, 64: 4},
                   stable_kimg_by_res={8: 0.8028, 16: 1.0817, 32: 2.0228},
                   fade_kimg_by_res={8: 0.8052, 16: 1.0031, 32: 1.7463, 64: 1.6248})
    # added left to right as schedule() does (Python 3.12's sum() compensates and would hide the noise)
    start = 0.0
    for _, _, k in train.phases(4, cfg)[:-1]:
        start += k
    assert start != 9.892  # the float noise is there
    assert train.boundary_images(start) == 9892
    assert train.final_phase_start(4, cfg) == 9892
    assert train.schedule(9891, 4, cfg).name == "fade" and train.schedule(9891, 4, cfg).step == 4
    final = train.schedule(9892, 4, cfg)
    assert (final.name, final.step, final.alpha, final.done) == ("stable", 4, 1.0, False)
    assert train.schedule(9892 + 2872, 4, cfg).done and not train.schedule(9892 + 2871, 4, cfg).done


def test_schedule_single_resolution_is_one_final_phase():
    cfg = tiny_cfg(final_kimg=5.0)
    assert train.total_kimg(0, cfg) == 5.0
    assert train.schedule(4000, 0, cfg).done is False


# ----------------------------------------------------------------------------- losses

def test_losses_match_hand_computation():
    d_real, d_fake = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0])
    assert train.critic_loss(d_real, d_fake).item() == pytest.approx(4.0 - 1.5)
    assert train.generator_loss(d_fake).item() == pytest.approx(-4.0)
    assert train.drift_penalty(d_real).item() == pytest.approx((1 + 4) / 2)


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = <w, x>: the gradient is w at every point, so the penalty is (|w| - 1)^2.
    w = torch.tensor([[[[3.0, 0.0], [0.0, 4.0]]]])  # |w| = 5
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    gp = train.gradient_penalty(critic, real, fake, torch.rand(4))
    assert gp.item() == pytest.approx(16.0)
    # a scaled (fp16 GradScaler) backward gives the same penalty once unscaled
    assert train.gradient_penalty(critic, real, fake, torch.rand(4), grad_scale=1024.0).item() == pytest.approx(16.0)


def test_gradient_penalty_interpolates_between_real_and_fake():
    seen = []
    critic = lambda x: (seen.append(x.detach()), x.flatten(1).sum(1))[1]  # noqa: E731
    real, fake = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    gp = train.gradient_penalty(critic, real, fake, torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(seen[0][:, 0, 0, 0], torch.tensor([0.25, 1.0]))
    assert gp.item() == pytest.approx((2.0 - 1.0) ** 2)  # |grad| = sqrt(4 ones) = 2


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_fading_reals_use_the_generators_upsampling(mode):
    """While a resolution fades in, a real is blended with its down-and-up-sampled self the way the
    generator blends its output: with nearest-neighbour upsampling, each 2x2 block's mean repeated."""
    images = torch.randint(0, 256, (3, 1, 4, 4), dtype=torch.uint8)
    idx = torch.tensor([2, 0, 1])
    x = dataset.prepare_batch(images[idx], generator=torch.Generator().manual_seed(5))
    out = training.real_batch(images, idx, torch.Generator().manual_seed(5), 0.25, upsample=mode)
    blocks = x.reshape(3, 1, 2, 2, 2, 2).mean((3, 5))  # (3, 1, 2, 2): the 2x2 average pooling
    if mode == "nearest":
        low = blocks.repeat_interleave(2, -1).repeat_interleave(2, -2)
    else:
        low = torch.nn.functional.interpolate(blocks, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, 0.75 * low + 0.25 * x)
    assert not torch.equal(out, training.real_batch(images, idx, torch.Generator().manual_seed(5), 1.0,
                                                    upsample=mode))  # no blend once alpha is 1


def test_gradient_penalty_under_bf16_autocast_is_close_to_fp32():
    torch.manual_seed(0)
    d = modules.Critic(modules.preset("tiny"))
    real, fake, eps = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16), torch.rand(4)
    ref = train.gradient_penalty(lambda x: d(x, 2), real, fake, eps)

    def bf16(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return d(x, 2)
    gp = train.gradient_penalty(bf16, real, fake, eps)
    assert gp.dtype == torch.float32
    assert gp.item() == pytest.approx(ref.item(), rel=0.05)
    gp.backward()  # the penalty trains the critic: gradients reach its weights
    assert d.final_out.weight.grad is not None


def test_smoothing_is_bias_corrected_ema():
    assert train.smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    assert train.smooth([0.0, 2.0], 0.5) == pytest.approx([0.0, 1.0 / 0.75])


@pytest.mark.parametrize("lr_mul", [0.01, 1.0])  # every preset's (StyleGAN's), and round 15's --mapping-lr-mul 1
def test_mapping_network_moves_at_its_lr_mul(lr_mul):
    # Adam moves every stored weight by about lr on its first step; lr_mul scales that in the
    # effective weight, so the mapping network's effective weights move lr_mul times as far per unit of scale.
    torch.manual_seed(0)
    cfg = modules.preset("tiny", mapping_lr_mul=lr_mul)
    t = train.Trainer(cfg, tiny_cfg(style_mixing=0.0), torch.device("cpu"))
    lin, conv = t.G.mapping.layers[0], t.G.blocks[0][1].conv
    before = (lin.weight * lin.weight_gain).clone(), (conv.weight * conv.weight_gain).clone()
    t.train_step([torch.randn(4, 1, 4, 4)], 0, 1.0, lr=1e-3)
    d_map = ((lin.weight * lin.weight_gain) - before[0]).abs().max() / lin.weight_gain * lin.bias_gain
    d_conv = ((conv.weight * conv.weight_gain) - before[1]).abs().max() / conv.weight_gain
    assert d_conv.item() == pytest.approx(1e-3, rel=0.05)
    assert d_map.item() == pytest.approx(1e-3 * lr_mul, rel=0.05)


@pytest.mark.parametrize("scale", [1.0, 0.25, 0.0])
def test_mapping_lr_scale_shrinks_only_the_mapping_networks_step(scale):
    # Adam's first step moves every stored weight by lr; --mapping-lr-scale f makes the mapping
    # network's step f * lr (0 freezes it) and leaves the synthesis layers' step at lr.
    torch.manual_seed(0)
    t = train.Trainer(modules.preset("tiny", mapping_lr_mul=1.0),
                      tiny_cfg(style_mixing=0.0, mapping_lr_scale=scale), torch.device("cpu"))
    lin, conv = t.G.mapping.layers[-1], t.G.blocks[0][1].conv
    before = lin.weight.clone(), lin.bias.clone(), conv.weight.clone()
    t.train_step([torch.randn(4, 1, 4, 4)], 0, 1.0, lr=1e-3)
    assert (lin.weight - before[0]).abs().max().item() == pytest.approx(1e-3 * scale, rel=0.01, abs=1e-9)
    assert (lin.bias - before[1]).abs().max().item() == pytest.approx(1e-3 * scale, rel=0.01, abs=1e-9)
    assert (conv.weight - before[2]).abs().max().item() == pytest.approx(1e-3, rel=0.01)


def test_mapping_lr_scale_100_at_lr_mul_001_trains_like_lr_mul_1():
    # A quick parent's mapping: lr_mul 0.01 with every step x 100 must be the lr_mul 1 network. The
    # initial effective weights are the same draws, and after steps the two agree up to float rounding.
    nets = []
    for lr_mul, scale in ((1.0, 1.0), (0.01, 100.0)):
        torch.manual_seed(0)
        t = train.Trainer(modules.preset("tiny", mapping_lr_mul=lr_mul),
                          tiny_cfg(style_mixing=0.0, mapping_lr_scale=scale), torch.device("cpu"))
        torch.manual_seed(1)
        for i in range(3):
            t.train_step([torch.randn(4, 1, 4, 4)], 0, 1.0, lr=2e-3, iteration=i)
        nets.append(t.G)
    for a, b in zip(nets[0].mapping.layers, nets[1].mapping.layers):
        torch.testing.assert_close(a.weight * a.weight_gain, b.weight * b.weight_gain, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(a.bias * a.bias_gain, b.bias * b.bias_gain, rtol=1e-3, atol=1e-4)
    z = torch.randn(8, nets[0].z_dim)
    torch.testing.assert_close(nets[0].mapping(z), nets[1].mapping(z), rtol=1e-3, atol=1e-4)


def test_a_quick_parent_trains_its_mapping_at_lr_x1_and_its_children_at_001():
    parse = train.build_parser().parse_args
    model, parent = train.resolve_config(parse(["--class", "all", "--preset", "quick"]))
    assert model.mapping_lr_mul == 0.01 and parent.mapping_lr_scale == 100.0
    for cls in ("AD", "NC"):  # a from-scratch run keeps StyleGAN's rate
        assert train.resolve_config(parse(["--class", cls, "--preset", "quick"]))[1].mapping_lr_scale == 1.0
    assert train.resolve_config(parse(["--class", "all", "--preset", "full"]))[1].mapping_lr_scale == 1.0
    assert train.resolve_config(parse(["--class", "all", "--preset", "quick", "--mapping-lr-scale", "1"]))[1] \
        .mapping_lr_scale == 1.0
    # an explicit --mapping-lr-mul is the rate the user wants: no x100 on top of it
    model_1, cfg_1 = train.resolve_config(parse(["--class", "all", "--preset", "quick", "--mapping-lr-mul", "1"]))
    assert model_1.mapping_lr_mul == 1.0 and cfg_1.mapping_lr_scale == 1.0
    saved = types.SimpleNamespace(train_config=dataclasses.asdict(parent), model_config=model.to_dict())
    child = parse(["--class", "AD", "--init-from", "runs/all/checkpoint.pt"])
    child_model, child_cfg = train.child_config(child, saved)
    assert child_model == model and child_cfg.mapping_lr_scale == 1.0 and child_cfg.class_name == "AD"
    assert child_cfg.critic_lr_scale == parent.critic_lr_scale == 3.0  # the critic's TTUR rate carries over
    child = parse(["--class", "NC", "--init-from", "runs/all/checkpoint.pt", "--mapping-lr-scale", "0"])
    assert train.child_config(child, saved)[1].mapping_lr_scale == 0.0
    # quick children train without style mixing (round 75); the parent and from-scratch runs keep 0.9, and the
    # flag still decides
    assert parent.style_mixing == 0.9 and child_cfg.style_mixing == 0.0
    assert train.resolve_config(parse(["--class", "AD", "--preset", "quick"]))[1].style_mixing == 0.9
    child = parse(["--class", "AD", "--init-from", "runs/all/checkpoint.pt", "--style-mixing", "0.5"])
    assert train.child_config(child, saved)[1].style_mixing == 0.5
    # and with a gradient-penalty weight of 5 (round 83); the parent and from-scratch runs keep 10, the flag decides
    assert parent.gp_lambda == 10.0 and child_cfg.gp_lambda == 5.0
    assert train.resolve_config(parse(["--class", "NC", "--preset", "quick"]))[1].gp_lambda == 10.0
    child = parse(["--class", "NC", "--init-from", "runs/all/checkpoint.pt", "--gp-lambda", "10"])
    assert train.child_config(child, saved)[1].gp_lambda == 10.0


def test_mapping_lr_scale_refuses_a_negative_value():
    with pytest.raises(ValueError, match="--mapping-lr-scale"):
        tiny_cfg(mapping_lr_scale=-0.5)


@pytest.mark.parametrize("scale", [1.0, 4.0, 0.5])
def test_critic_lr_scale_multiplies_only_the_critics_step(scale):
    # Adam's first step moves each weight with a gradient by about lr: --critic-lr-scale f makes the
    # critic's step f * lr and leaves the generator's at lr (TTUR).
    torch.manual_seed(0)
    t = train.Trainer(modules.preset("tiny"), tiny_cfg(style_mixing=0.0, critic_lr_scale=scale),
                      torch.device("cpu"))
    d_before = [p.detach().clone() for p in t.D.parameters()]
    conv = t.G.blocks[0][1].conv
    g_before = conv.weight.clone()
    t.train_step([torch.randn(4, 1, 4, 4)], 0, 1.0, lr=1e-3)
    d_step = max((p - b).abs().max().item() for p, b in zip(t.D.parameters(), d_before))
    assert d_step == pytest.approx(1e-3 * scale, rel=0.01)
    assert (conv.weight - g_before).abs().max().item() == pytest.approx(1e-3, rel=0.01)
    assert json.loads(json.dumps(dataclasses.asdict(t.cfg)))["critic_lr_scale"] == scale


def test_critic_lr_scale_flag_reaches_the_config_and_refuses_zero():
    parse = train.build_parser().parse_args
    assert train.resolve_config(parse(["--class", "AD", "--preset", "tiny", "--critic-lr-scale", "2"]))[1] \
        .critic_lr_scale == 2.0
    assert train.resolve_config(parse(["--class", "AD", "--preset", "tiny"]))[1].critic_lr_scale == 1.0
    assert train.resolve_config(parse(["--class", "AD", "--preset", "full"]))[1].critic_lr_scale == 1.0
    for cls in ("AD", "all"):  # the quick preset's TTUR, in a parent and from scratch
        assert train.resolve_config(parse(["--class", cls, "--preset", "quick"]))[1].critic_lr_scale == 3.0
    assert train.resolve_config(parse(["--class", "AD", "--preset", "quick", "--critic-lr-scale", "1"]))[1] \
        .critic_lr_scale == 1.0
    with pytest.raises(ValueError, match="--critic-lr-scale"):
        tiny_cfg(critic_lr_scale=0.0)


def test_betas_flag_reaches_the_optimizers_also_after_loading_a_state_with_other_betas(capsys):
    parse = train.build_parser().parse_args
    cfg = train.resolve_config(parse(["--class", "AD", "--preset", "tiny", "--betas", "0,0.9"]))[1]
    assert cfg.betas == (0.0, 0.9)
    assert train.resolve_config(parse(["--class", "AD", "--preset", "tiny"]))[1].betas == (0.0, 0.99)
    for bad in ("0.9", "0,1", "a,b"):
        with pytest.raises(SystemExit):
            parse(["--class", "AD", "--betas", bad])
        assert "--betas" in capsys.readouterr().err
    old = train.Trainer(modules.preset("tiny"), tiny_cfg(), torch.device("cpu"))
    new = train.Trainer(modules.preset("tiny"), tiny_cfg(betas=(0.0, 0.9)), torch.device("cpu"))
    new.load_state(old.state())  # a resumed run's or a parent's optimizers, saved with (0, 0.99)
    assert {g["betas"] for opt in (new.opt_g, new.opt_d) for g in opt.param_groups} == {(0.0, 0.9)}
    both = train.Trainer(modules.preset("tiny"), tiny_cfg(critic_beta2=0.9), torch.device("cpu"))
    both.load_state(old.state())
    assert [g["betas"] for g in both.opt_g.param_groups] == [(0.0, 0.99)]
    assert [g["betas"] for g in both.opt_d.param_groups] == [(0.0, 0.9)]
    assert train.resolve_config(parse(["--class", "AD", "--preset", "tiny", "--critic-beta2", "0.9"]))[1] \
        .critic_beta2 == 0.9
    with pytest.raises(ValueError, match="--critic-beta2"):
        tiny_cfg(critic_beta2=1.0)
    for bad in ((0.0, 1.0), (-0.1, 0.99), (0.0,)):  # a config built in Python or an edited config.json
        with pytest.raises(ValueError, match="--betas"):
            tiny_cfg(betas=bad)


def test_noise_resolution_flags_refuse_what_is_not_a_resolution(capsys):
    parse = train.build_parser().parse_args
    for flag in ("--noise-max-res", "--noise-min-res"):
        for bad in ("12", "x", "2"):
            with pytest.raises(SystemExit):
                parse(["--class", "AD", flag, bad])
            assert flag in capsys.readouterr().err
    assert parse(["--class", "AD", "--noise-max-res", "32"]).noise_max_res == 32
    assert parse(["--class", "AD", "--noise-max-res", "all"]).noise_max_res == "all"


def test_critic_update_clip_caps_the_critics_step_and_leaves_adams_moments_alone():
    # Adam's first step moves every weight with a gradient by lr (the sign of its gradient): a clip of 0.5
    # must halve those moves in the critic only, while Adam's second moments stay what Adam computed.
    steps, moments = {}, {}
    for clip in (None, 0.5):
        torch.manual_seed(0)
        t = train.Trainer(modules.preset("tiny"), tiny_cfg(style_mixing=0.0, critic_update_clip=clip),
                          torch.device("cpu"))
        d_before = [p.detach().clone() for p in t.D.parameters()]
        g_before = [p.detach().clone() for p in t.G.parameters()]
        torch.manual_seed(1)
        t.train_step([torch.randn(4, 1, 4, 4)], 0, 1.0, lr=1e-3)
        moved = torch.cat([(p - b).abs().flatten() for p, b in zip(t.D.parameters(), d_before)])
        steps[clip] = moved[moved > 0]
        moments[clip] = [t.opt_d.state[p]["exp_avg_sq"].clone() for p in t.D.parameters() if p in t.opt_d.state]
        assert max((p - b).abs().max().item() for p, b in zip(t.G.parameters(), g_before)) == \
            pytest.approx(1e-3, rel=0.01)
    assert steps[None].max().item() == pytest.approx(1e-3, rel=0.01)
    assert steps[0.5].max().item() == pytest.approx(0.5e-3, rel=0.01)
    assert len(steps[0.5]) == len(steps[None])  # the same weights moved, each by at most 0.5 lr
    assert all(torch.equal(a, b) for a, b in zip(moments[None], moments[0.5]))
    parse = train.build_parser().parse_args
    assert train.resolve_config(parse(["--class", "AD", "--preset", "tiny", "--critic-update-clip", "3"]))[1] \
        .critic_update_clip == 3.0
    assert train.resolve_config(parse(["--class", "AD", "--preset", "tiny"]))[1].critic_update_clip is None
    with pytest.raises(ValueError, match="--critic-update-clip"):
        tiny_cfg(critic_update_clip=0.0)
    for preset, clip in (("quick", 3.0), ("tiny", 0.0), ("full", 0.0)):  # the spike guard: quick only
        assert train.resolve_config(parse(["--class", "all", "--preset", preset]))[1].spike_clip == clip
    off = train.resolve_config(parse(["--class", "AD", "--preset", "quick", "--spike-clip", "0", "--spike-gp", "8"]))[1]
    assert (off.spike_clip, off.spike_gp) == (0.0, 8.0)
    for bad in (dict(spike_clip=-1.0), dict(spike_gp=0.0)):
        with pytest.raises(ValueError, match="--spike-"):
            tiny_cfg(**bad)


def test_load_state_restores_the_fp16_loss_scale():
    scaled = train.Trainer(modules.preset("tiny"), tiny_cfg(), torch.device("cpu"))
    state = {**scaled.state(), "scaler": {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                          "growth_interval": 2000, "_growth_tracker": 7}}
    t = train.Trainer(modules.preset("tiny"), tiny_cfg(), torch.device("cpu"))
    t.scaler = torch.amp.GradScaler("cpu", enabled=True)
    t.load_state(state)
    assert t.scaler.get_scale() == 1024.0 and t.scaler._get_growth_tracker() == 7


def test_freeze_critic_keeps_the_top_resolutions_of_the_critic_and_trains_the_rest():
    # FreezeD in a child: the 16-px from-image layer and block of the tiny critic keep their weights,
    # the 8-px and 4-px layers and the generator train; 0 freezes nothing.
    for k, frozen_steps in ((1, {2}), (2, {1, 2}), (0, set())):
        torch.manual_seed(0)
        t = train.Trainer(modules.preset("tiny"), tiny_cfg(style_mixing=0.0, freeze_critic=k, init_from="p.pt"),
                          torch.device("cpu"))
        before = {n: p.detach().clone() for n, p in t.D.named_parameters()}
        for it in range(2):
            t.train_step([torch.randn(4, 1, 16, 16)], 2, 1.0, lr=1e-3, iteration=it)
        moved = {n for n, p in t.D.named_parameters() if not torch.equal(p, before[n])}
        top = {n for n in before if n.split(".")[0] in ("from_image", "blocks") and int(n.split(".")[1]) in frozen_steps}
        assert not moved & top and moved == set(before) - top - {"from_image.0.weight", "from_image.0.bias",
                                                                 "from_image.1.weight", "from_image.1.bias"}
        assert all(p.requires_grad is False for p in t.frozen_d) and len(t.frozen_d) == 6 * k


def test_bf16_critic_output_bias_learns_only_with_the_fp32_epilogue():
    # The critic's output bias gets -1/N per real and +1/N per fake, which cancel, plus the drift
    # term 2 * drift * D/N. A bf16 score's gradient rounds that last term away (|D| << 1 at init),
    # so without the fp32 epilogue the bias never moves; with it, it does, as in fp32.
    moved = {}
    for epilogue in (True, False):
        torch.manual_seed(0)
        t = train.Trainer(modules.preset("tiny"), tiny_cfg(amp="bf16", style_mixing=0.0, fp32_epilogue=epilogue),
                          torch.device("cpu"))
        assert t.D.fp32_epilogue is epilogue
        before = t.D.final_out.bias.detach().clone()
        for it in range(2):
            losses = t.train_step([torch.randn(4, 1, 16, 16)], 2, 1.0, lr=1e-3, iteration=it)
        assert losses["d_real"].dtype == torch.float32 and math.isfinite(losses["loss_d"].item())
        moved[epilogue] = (t.D.final_out.bias - before).abs().item()
    assert moved[True] > 1e-4 and moved[False] == 0.0


def test_freeze_critic_is_refused_without_a_parent_and_below_zero(tmp_path, capsys):
    with pytest.raises(ValueError, match="--freeze-critic.*--init-from"):
        tiny_cfg(freeze_critic=1)
    with pytest.raises(ValueError, match="--freeze-critic"):
        tiny_cfg(freeze_critic=-1, init_from="p.pt")
    assert train_main(["--class", "AD", "--out", tmp_path / "run", *TINY_TRAIN, "--freeze-critic", "1"]) == 2
    assert "--freeze-critic" in capsys.readouterr().err and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- runs

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "AD"
    assert train_main(["--class", "AD", "--out", out, *TINY_TRAIN]) == 0
    return out


@pytest.mark.slow
def test_tiny_run_writes_every_output(tiny_run):
    out = tiny_run
    names = set(os.listdir(out))
    assert {"checkpoint.pt", "config.json", "stats.jsonl", "AD_critic_loss.png",
            "AD_generator_loss.png", "samples"} <= names
    assert {"snapshot_4x4.pt", "snapshot_8x8.pt", "snapshot_16x16.pt"} <= names
    assert not [n for n in names if n.startswith(".tmp")]
    cfg = json.load(open(out / "config.json"))
    assert cfg["train"]["class_name"] == "AD" and cfg["model"]["resolution"] == 16
    rows = [json.loads(line) for line in open(out / "stats.jsonl")]
    assert rows[-1]["kimg"] >= train.total_kimg(2, tiny_cfg())
    for key in ("images_seen", "resolution", "alpha", "loss_d", "loss_g", "gp", "images_per_s"):
        assert key in rows[0]
    assert [r["iteration"] for r in rows] == list(range(1, len(rows) + 1))
    assert {r["resolution"] for r in rows} == {4, 8, 16}
    fades = [r["alpha"] for r in rows if r["phase"] == "fade"]
    assert min(fades) < 0.2 and max(fades) > 0.8
    samples = sorted(os.listdir(out / "samples"))
    assert "final.png" in samples and len(samples) == 5  # 4 phase ends + the final (16px stable) grid
    from PIL import Image
    assert Image.open(out / "samples" / "final.png").size == (9 * 17 + 1, 9 * 17 + 1)


@pytest.mark.slow
def test_tiny_run_checkpoint_loads_as_generator(tiny_run):
    g = modules.load_generator(str(tiny_run / "checkpoint.pt"))
    assert (g.resolution, g.class_name, g.alpha) == (16, "AD", 1.0)
    img = g(torch.randn(5, g.z_dim))
    assert img.shape == (5, 1, 16, 16) and img.abs().max() <= 1
    state = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    assert state["images_seen"] >= 1250 and state["train_config"]["preset"] == "tiny"
    assert g.mapping.w_avg.abs().sum() > 0  # tracked during training, copied to the EMA


@pytest.mark.slow
def test_existing_run_is_not_overwritten(tiny_run, capsys):
    before = (tiny_run / "checkpoint.pt").read_bytes()
    assert train_main(["--class", "AD", "--out", tiny_run, *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    assert (tiny_run / "checkpoint.pt").read_bytes() == before


@pytest.mark.slow
def test_resume_refuses_other_class_and_architecture(tiny_run, capsys):
    assert train_main(["--class", "NC", "--out", tiny_run, "--resume", "--device", "cpu"]) == 2
    assert "class AD checkpoint" in capsys.readouterr().err
    assert train_main(["--class", "AD", "--out", tiny_run, "--resume", "--resolution", "32"]) == 2
    assert "architecture" in capsys.readouterr().err
    assert train_main(["--class", "AD", "--out", tiny_run / "nothing", "--resume"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_flags_exit_non_zero(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--class", "MCI"])
    assert e.value.code == 2
    assert train_main(["--class", "AD", "--out", tmp_path / "r", "--data", tmp_path / "missing", *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "missing") in err
    assert train_main(["--class", "AD", "--out", tmp_path / "r2", "--resolution", "24", *TINY_TRAIN]) == 2
    capsys.readouterr()
    for flag, value in (("--gp-every", "0"), ("--lr-rampdown", "1.5"), ("--critic-channels", "64:16"),
                        ("--mbstd-group", "0")):
        assert train_main(["--class", "AD", "--out", tmp_path / "r3", *TINY_TRAIN, flag, value]) == 2
        err = capsys.readouterr().err
        assert flag in err and "Traceback" not in err and not (tmp_path / "r3").exists()
    with pytest.raises(SystemExit) as e:  # not a power of two: argparse's usage error, naming the flag
        train.main(["--class", "AD", "--out", str(tmp_path / "r4"), *map(str, TINY_TRAIN), "--noise-min-res", "6"])
    assert e.value.code == 2 and "--noise-min-res" in capsys.readouterr().err and not (tmp_path / "r4").exists()


def _weights(path):
    s = torch.load(path, weights_only=True)
    return s, {f"{net}.{k}": v for net in ("generator", "critic", "generator_ema") for k, v in s[net].items()}


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
    # 0.4 kimg crosses from 4x4 into the 8x8 fade; split at 0.2 kimg (inside 4x4)
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--class", "NC", *TINY_TRAIN, "--log-every", "1"]
    assert train_main([*common, "--out", straight, "--stop-kimg", "0.4"]) == 0
    assert train_main([*common, "--out", split, "--stop-kimg", "0.2"]) == 0
    assert train_main(["--class", "NC", "--out", split, "--resume", "--stop-kimg", "0.4", "--device", "cpu"]) == 0
    a, wa = _weights(straight / "checkpoint.pt")
    b, wb = _weights(split / "checkpoint.pt")
    assert (a["images_seen"], a["iteration"], a["step"], a["alpha"]) == \
           (b["images_seen"], b["iteration"], b["step"], b["alpha"])
    assert a["step"] == 1 and 0 < a["alpha"] < 1
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)
    for opt in ("optim_g", "optim_d"):
        for pid, st in a[opt]["state"].items():
            torch.testing.assert_close(st["exp_avg_sq"], b[opt]["state"][pid]["exp_avg_sq"], rtol=0, atol=0)
    la = [json.loads(x) for x in open(straight / "stats.jsonl")]
    lb = [json.loads(x) for x in open(split / "stats.jsonl")]
    assert [r["loss_d"] for r in la] == [r["loss_d"] for r in lb]


@pytest.mark.slow
@pytest.mark.parametrize("log_every", [1, 7])
def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch, capsys, log_every):
    real_step = train.Trainer.train_step
    calls = {"n": 0}

    def poisoned(self, *a, **kw):
        out = real_step(self, *a, **kw)
        calls["n"] += 1
        if calls["n"] >= 25:
            out["loss_g"] = torch.tensor(float("nan"))
        return out
    monkeypatch.setattr(train.Trainer, "train_step", poisoned)
    out = tmp_path / "nan"
    assert train_main(["--class", "AD", "--out", out, *TINY_TRAIN, "--ckpt-every", "0.05", "--log-every", log_every]) == 2
    err = capsys.readouterr().err
    assert "non-finite loss_g at iteration 25" in err and "checkpoint" in err
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["iteration"] < 25
    assert all(torch.isfinite(v).all() for v in state["generator"].values())


def test_penalty_peak_finds_the_largest_logged_penalty():
    rows = [{"kimg": 0.5, "gp": 0.2}, {"kimg": 1.0, "gp": 12.5}, {"kimg": 1.5, "gp": 3.0}, {"kimg": 2.0}]
    assert train.penalty_peak(rows) == (12.5, 1.0)
    assert train.penalty_peak([]) is None and train.penalty_peak([{"kimg": 1.0}]) is None
    msg = train.penalty_warning(12.5, 1.0)
    assert "12.5 at 1.00 kimg" in msg and "--seed" in msg


@pytest.mark.slow
def test_a_penalty_spike_is_warned_during_the_run_and_at_its_end(tmp_path, monkeypatch, capsys):
    """A critic blowing up trains on without an error; the user is told once when the logged penalty passes
    GP_WARN and again at the end, with the run's peak, so a collapsed run is not used unawares."""
    real_step = train.Trainer.train_step
    calls = {"n": 0}

    def spiking(self, *a, **kw):
        out = real_step(self, *a, **kw)
        calls["n"] += 1
        if calls["n"] in (20, 30):
            out["gp"] = torch.tensor(40.0 if calls["n"] == 20 else 80.0)
        return out
    monkeypatch.setattr(train.Trainer, "train_step", spiking)
    out = tmp_path / "spike"
    assert train_main(["--class", "AD", "--out", out, *TINY_TRAIN, "--log-every", 1, "--stop-kimg", 0.6,
                       "--spike-clip", 2, "--spike-gp", 30]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: gradient penalty")]
    assert len(warnings) == 2, err  # the first crossing, then the run's peak at its end
    rows = train.read_stats(str(out / "stats.jsonl"))
    assert warnings[0].startswith(f"warning: gradient penalty 40.0 at {rows[19]['kimg']:.2f} kimg")
    assert warnings[1].startswith(f"warning: gradient penalty 80.0 at {rows[29]['kimg']:.2f} kimg")
    # --spike-clip: from the first crossing on the critic's steps are capped, and the checkpoint (so a resumed
    # run, and children) and config.json carry the cap
    capped = [line for line in err.splitlines() if "--spike-clip" in line]
    assert capped == ["gradient penalty 40.0 (above --spike-gp 30): the critic's steps are capped at 2x its lr "
                      f"from {rows[19]['kimg']:.2f} kimg on (--spike-clip)"]
    assert modules.Checkpoint.load(str(out / "checkpoint.pt")).train_config["critic_update_clip"] == 2.0
    assert json.loads((out / "config.json").read_text())["train"]["critic_update_clip"] == 2.0


@pytest.mark.slow
def test_no_penalty_warning_on_a_clean_run(tiny_run):
    peak = train.penalty_peak(train.read_stats(str(tiny_run / "stats.jsonl")))
    assert peak is not None and peak[0] < train.GP_WARN
    assert modules.Checkpoint.load(str(tiny_run / "checkpoint.pt")).train_config["critic_update_clip"] is None


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    """Kill the process at a random moment after its first checkpoint: the checkpoint is whole
    and --resume finishes the run."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "train.py", "--class", "AD", "--out", str(out), *TINY_TRAIN, "--ckpt-every", "0.05"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = modules.load_checkpoint(str(out / "checkpoint.pt"))  # whole, not half-written
    assert state["images_seen"] > 0
    r = subprocess.run([sys.executable, "train.py", "--class", "AD", "--out", str(out), "--resume",
                        "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    assert final["images_seen"] >= 1250
    rows = [json.loads(x) for x in open(out / "stats.jsonl")]
    assert [r["iteration"] for r in rows] == list(range(1, len(rows) + 1))  # no duplicated steps


# ----------------------------------------------------------------------------- data parallel

def _ddp_worker(rank: int, world: int, port: int, out: str, result_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    model_cfg = modules.preset("tiny")
    cfg = tiny_cfg(out=out, demo_count=48, stop_kimg=0.35, batch={4: 8, 8: 8, 16: 8})
    trainer = train.run(model_cfg, cfg, device_arg="cpu", progress=False)
    state = {f"{n}.{k}": v for n, m in (("G", trainer.G), ("D", trainer.D), ("E", trainer.G_ema))
             for k, v in m.state_dict().items()}
    torch.save(state, os.path.join(result_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_data_parallel_keeps_ranks_identical(tmp_path):
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, port, str(out), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0.keys() == r1.keys()
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], rtol=0, atol=0, msg=k)
    initial = modules.Generator(modules.preset("tiny"))
    assert not torch.equal(r0["G.const"], initial.const)  # it really trained
    assert (out / "checkpoint.pt").exists()  # written by rank 0
    rows = [json.loads(x) for x in open(out / "stats.jsonl")]
    assert rows[-1]["images_seen"] >= 350 and math.isfinite(rows[-1]["loss_d"])


def test_amp_resolution(monkeypatch):
    cpu = torch.device("cpu")
    assert train.resolve_amp("off", cpu) == "off"
    assert train.resolve_amp("bf16", cpu) == "bf16"
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    for native, expected in ((True, "bf16"), (False, "off")):  # on CUDA auto follows the hardware's flag,
        monkeypatch.setattr(training, "native_bf16", lambda device: native)
        assert train.resolve_amp("auto", cuda) == expected
        assert train.resolve_amp("auto", cpu) == "off"  # on a CPU it is fp32 even with native bf16
    monkeypatch.undo()
    with pytest.raises(train.RunError, match="--amp fp16 needs a CUDA device"):
        train.resolve_amp("fp16", cpu)
    t = train.Trainer(modules.preset("tiny"), tiny_cfg(amp="bf16"), cpu)
    assert t.channels_last and t.amp_dtype == torch.bfloat16  # NHWC follows autocast by default
    assert t.G.const.is_contiguous(memory_format=torch.channels_last)
    assert not train.Trainer(modules.preset("tiny"), tiny_cfg(amp="bf16", channels_last=False), cpu).channels_last
    # fp32: NHWC on a CPU (faster there, docs/performance.md), NCHW on a GPU; an explicit choice wins
    assert training.default_channels_last("off", cpu) and not training.default_channels_last("off", cuda)
    assert training.default_channels_last("bf16", cuda) and training.default_channels_last("fp16", cuda)
    t32 = train.Trainer(modules.preset("tiny"), tiny_cfg(amp="off"), cpu)
    assert t32.channels_last and t32.amp_dtype is None
    assert not train.Trainer(modules.preset("tiny"), tiny_cfg(amp="off", channels_last=False), cpu).channels_last


@pytest.mark.slow
def test_trains_on_an_adni_layout_folder(tmp_path, capsys):
    """Real data enters by path: the demo set exported as ADNI-style 256x240 JPEGs."""
    root = tmp_path / "ADNI"
    dataset.export_demo(str(root), count=20, seed=1, force=False)
    out = tmp_path / "run"
    assert train_main(["--class", "NC", "--data", root, "--out", out, "--preset", "tiny", "--stop-kimg", "0.05",
                     "--device", "cpu"]) == 0
    first = capsys.readouterr().out.splitlines()[:2]
    assert str(root) in first[0] and "20" in first[0]
    assert first[1].startswith("class NC: 20 training images at 16x16")
    assert torch.load(out / "checkpoint.pt", weights_only=True)["train_config"]["data"] == str(root)


# ----------------------------------------------------------------------------- recipe options

def test_lazy_gradient_penalty_every_k_steps_weighted_by_k(monkeypatch):
    cfg = modules.preset("tiny")
    t = train.Trainer(cfg, tiny_cfg(style_mixing=0.0, gp_every=3, drift=0.0), torch.device("cpu"))
    calls = []
    real_gp = train.gradient_penalty
    monkeypatch.setattr(training, "gradient_penalty", lambda *a, **k: calls.append(1) or real_gp(*a, **k))
    seen_loss = []
    monkeypatch.setattr(t, "_optimizer_step", lambda opt, net, loss, lr, **kw: seen_loss.append(loss.detach()))
    reals = [torch.randn(4, 1, 4, 4)]
    for it in range(6):
        t.train_step(reals, 0, 1.0, 1e-3, iteration=it)
    assert len(calls) == 2 and len(seen_loss) == 12  # penalty at iterations 0 and 3; a D and a G step each
    # on a penalty step, loss_d = Wasserstein loss + lambda * k * gp
    out = t.train_step(reals, 0, 1.0, 1e-3, iteration=6)
    assert out["loss_d"].item() == pytest.approx(-out["wdist"].item() + 10.0 * 3 * out["gp"].item(), rel=1e-5)
    out = t.train_step(reals, 0, 1.0, 1e-3, iteration=7)
    assert out["loss_d"].item() == pytest.approx(-out["wdist"].item(), rel=1e-5)
    with pytest.raises(ValueError, match="gp_every"):
        tiny_cfg(gp_every=0)


def test_style_mixing_crossover_stays_in_active_layers():
    cfg = modules.preset("tiny")
    for active, top in ((True, 3), (False, 5)):
        t = train.Trainer(cfg, tiny_cfg(style_mixing=1.0, mixing_active_only=active), torch.device("cpu"))
        crossovers = {t._latents(2, step=1)[2] for _ in range(300)}
        assert crossovers == set(range(1, top + 1))  # step 1 uses layers 0..3


def test_reset_adam_clears_moments_exactly_when_a_resolution_starts():
    cfg = modules.preset("tiny")
    tc = tiny_cfg(style_mixing=0.0, reset_adam=True, stable_kimg=0.032, fade_kimg=0.032, batch={4: 16, 8: 16, 16: 16})
    t = train.Trainer(cfg, tc, torch.device("cpu"))
    t.iterate([torch.randn(16, 1, 4, 4)], 0, 1.0, 1e-3, 16, 16)
    t.iterate([torch.randn(16, 1, 4, 4)], 0, 1.0, 1e-3, 32, 16)
    steps = lambda: int(next(iter(t.opt_g.state.values()))["step"])  # noqa: E731
    assert steps() == 2
    t.iterate([torch.randn(16, 1, 8, 8)], 1, 0.5, 1e-3, 48, 16)  # first iteration at 8x8: fresh moments
    assert steps() == 1
    t.iterate([torch.randn(16, 1, 8, 8)], 1, 1.0, 1e-3, 64, 16)
    assert steps() == 2


def _phase_seconds(cfg, speed, max_step=2, from_kimg=0.0):
    out, start = 0.0, 0.0
    for step, _, length in train.phases(max_step, cfg):
        part = max(0.0, start + length - max(start, from_kimg))
        out += part * 1000 / speed[4 * 2 ** step]
        start += length
    return out


def test_fit_schedule_fills_the_time_left_and_keeps_the_past():
    speed = {4: 400.0, 8: 200.0, 16: 50.0}
    cfg = tiny_cfg(stable_kimg=2.0, fade_kimg=1.0, final_kimg=4.0)
    budget = (100.0 - train.FIT_FINAL_S) * (1 - train.FIT_RESERVE)
    fit = train.fit_schedule(cfg, 2, 0, speed, 100.0)
    assert _phase_seconds(fit, speed) == pytest.approx(budget, rel=1e-3)
    ratios = [b / a for (_, _, a), (_, _, b) in zip(train.phases(2, cfg), train.phases(2, fit))]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-3)  # one factor for every phase
    # inside the 8x8 fade (started at 2 kimg): what is done and that fade stay as they are
    mid = train.fit_schedule(cfg, 2, 2500, speed, 30.0)
    assert [k for _, _, k in train.phases(2, mid)][:2] == [2.0, 1.0]
    assert _phase_seconds(mid, speed, from_kimg=2.5) == pytest.approx(
        (30.0 - train.FIT_FINAL_S) * (1 - train.FIT_RESERVE), rel=1e-3)
    # inside the final stable phase with no time left: it ends where it is
    end = train.fit_schedule(cfg, 2, 9000, speed, 0.0)
    assert train.total_kimg(2, end) == pytest.approx(9.0)
    assert train.schedule(9000, 2, end).done


def test_fit_schedule_gives_a_squeezed_phase_its_share_back():
    # Inside the 16x16 fade (from 5 to 6 kimg): a slow spell there (the fade alone needs 100 s of the
    # 50 s left) squeezes the final phase to nothing; once the speed recovers, it gets its time back.
    cfg = tiny_cfg(stable_kimg=2.0, fade_kimg=1.0, final_kimg=4.0)
    slow = train.fit_schedule(cfg, 2, 5500, {4: 400.0, 8: 200.0, 16: 5.0}, 50.0)
    assert slow.final_kimg == 0.0 and slow.fit_base == [2.0, 1.0, 2.0, 1.0, 4.0]
    fast = train.fit_schedule(slow, 2, 5600, {4: 400.0, 8: 200.0, 16: 50.0}, 45.0)
    budget = (45.0 - train.FIT_FINAL_S) * (1 - train.FIT_RESERVE)
    assert fast.final_kimg > 1.0
    assert _phase_seconds(fast, {4: 400.0, 8: 200.0, 16: 50.0}, from_kimg=5.6) == pytest.approx(budget, rel=1e-3)
    # inside a stable phase, what is left is scaled in the units of the plan before any fit
    half = dataclasses.replace(cfg, final_kimg=8.0, fit_base=[2.0, 1.0, 2.0, 1.0, 4.0])
    again = train.fit_schedule(half, 2, 10000, {4: 400.0, 8: 200.0, 16: 50.0}, 1000.0)
    assert again.final_kimg == pytest.approx(4.0 + 50.0 * (1000.0 - train.FIT_FINAL_S) * (1 - train.FIT_RESERVE) / 1000)


def test_clock_trusts_a_resolution_only_after_enough_seconds():
    clock = train.Clock(100.0, {8: 100.0, 16: 40.0})
    clock.record(8, 1500, 10.0)  # 150 img/s at 8x8 for 10 s: 1.5x the probe
    clock.record(16, 8, 2.0)     # two slow first seconds at 16x16: not trusted yet
    assert clock.speed() == pytest.approx({8: 150.0, 16: 60.0})
    clock.record(16, 392, 8.0)   # 10 s measured: 400 images
    assert clock.speed() == pytest.approx({8: 150.0, 16: 40.0})


@pytest.mark.slow
def test_minutes_fits_schedule_and_resume_keeps_it(tmp_path, capsys):
    out = tmp_path / "m"
    # 5 minutes, ended by --stop-kimg: room for the speed probe even on a machine busy with other jobs
    assert train_main(["--class", "AD", "--out", out, *TINY_TRAIN, "--minutes", "5", "--stop-kimg", "0.3"]) == 0
    saved = json.load(open(out / "config.json"))["train"]
    assert saved["minutes"] == 5 and set(saved["probe_images_per_s"]) == {"4", "8", "16"}
    assert set(saved["fade_kimg_by_res"]) == {"8", "16"} and saved["stable_kimg_by_res"]["4"] > 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["train_config"]["probe_images_per_s"] and state["elapsed_s"] > 0
    assert train_main(["--class", "AD", "--out", out, "--resume", "--minutes", "9", "--device", "cpu"]) == 2
    assert "--minutes" in capsys.readouterr().err
    assert train_main(["--class", "AD", "--out", tmp_path / "short", *TINY_TRAIN, "--minutes", "0.01"]) == 2
    assert "no time to train" in capsys.readouterr().err


def test_quick_schedule_is_top_heavy_and_one_number_still_sets_every_phase():
    def plan(*flags):
        _, cfg = train.resolve_config(train.build_parser().parse_args(["--class", "AD", "--preset", "quick", *flags]))
        return [kimg for _, _, kimg in training.phases(4, cfg)]
    default = plan()
    assert default == [4, 4, 4, 5, 5, 8, 10, 8, 16]
    assert sum(default[-2:]) / sum(default) == 0.375  # 24 of 64 kimg at 64 px (16 of 80 before)
    assert plan("--stable-kimg", "10", "--fade-kimg", "8", "--final-kimg", "8") == [10, 8, 10, 8, 10, 8, 10, 8, 8]
    assert plan("--stable-kimg", "4:7", "--fade-kimg", "32:3") == [7, 4, 4, 5, 5, 3, 10, 8, 16]


@pytest.mark.slow
def test_architecture_flags_are_saved_and_resume_keeps_them(tmp_path):
    out = tmp_path / "arch"
    assert train_main(["--class", "NC", "--out", out, *TINY_TRAIN, "--channels", "16:12", "--noise-max-res", "16",
                     "--noise-min-res", "8",
                     "--critic-channels", "16:10", "--skip-output", "--mbstd-group", "1", "--upsample", "nearest",
                     "--to-image-kernel", "3", "--stable-kimg", "4:0.032,8:0.016", "--gp-every", "2", "--no-fp32-epilogue",
                     "--stop-kimg", "0.064"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    mc = state["model_config"]
    assert mc["channels"][16] == 12 and mc["noise_max_res"] == 16 and mc["skip_output"] is True
    assert mc["noise_min_res"] == 8 and "blocks.0.0.noise.weight" not in state["generator"]
    assert "blocks.1.0.noise.weight" in state["generator"]
    assert mc["mbstd_group"] == 1 and mc["upsample"] == "nearest" and mc["to_image_kernel"] == 3
    assert state["generator"]["to_image.2.weight"].shape == (1, 12, 3, 3)
    assert mc["critic_channels"] == {16: 10} and state["critic"]["from_image.2.weight"].shape[0] == 10
    assert state["train_config"]["stable_kimg_by_res"] == {4: 0.032, 8: 0.016}
    assert state["step"] == 1  # 0.064 kimg = 4x4 (0.032) and part of the 8x8 fade
    assert train_main(["--class", "NC", "--out", out, "--resume", "--stop-kimg", "0.096", "--device", "cpu"]) == 0
    g = modules.load_generator(str(out / "checkpoint.pt"))
    assert g.cfg.channels[16] == 12 and g.cfg.skip_output and g.cfg.upsample == "nearest"
    assert torch.load(out / "checkpoint.pt", weights_only=True)["train_config"]["fp32_epilogue"] is False
