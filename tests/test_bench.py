"""bench.py: well-formed output, FLOP counting against hand counts, and bf16 vs fp32 steps."""
import json

import pytest
import torch
import torch.nn.functional as F

import bench

KEYS = {"res", "batch", "precision", "images_per_s", "gflop_per_image", "gflops", "ceiling_gflops",
        "utilization", "data_images_per_s", "peak_rss_mb"}


def test_bench_prints_one_json_line_per_resolution_and_precision(capsys):
    assert bench.main(["--preset", "tiny", "--res", "4", "8", "--precision", "fp32", "bf16",
                       "--iters", "1", "--warmup", "1", "--batch", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["precision"], r["res"]) for r in rows] == [("fp32", 4), ("fp32", 8), ("bf16", 4), ("bf16", 8)]
    for r in rows:
        assert KEYS <= set(r)
        assert r["batch"] == 4
        assert r["images_per_s"] > 0 and r["gflop_per_image"] > 0 and r["ceiling_gflops"] > 0
        assert r["gflops"] == pytest.approx(r["images_per_s"] * r["gflop_per_image"], rel=0.05, abs=0.05)
    assert rows[1]["gflop_per_image"] > rows[0]["gflop_per_image"]  # 8x8 costs more than 4x4


def test_batch_train_uses_train_py_batch_per_resolution(capsys):
    assert bench.main(["--preset", "tiny", "--res", "4", "8", "--precision", "fp32",
                       "--iters", "1", "--warmup", "0", "--batch", "train"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    tiny = bench.training.TRAIN_PRESETS["tiny"]["batch"]
    assert [(r["res"], r["batch"]) for r in rows] == [(4, tiny[4]), (8, tiny[8])]


@pytest.mark.parametrize("value", ["0", "-3", "big"])
def test_bad_batch_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--preset", "tiny", "--batch", value])
    assert e.value.code == 2 and "--batch" in capsys.readouterr().err


def test_interleaved_medians_time_each_function_in_turns():
    calls = []
    meds = bench._interleaved_medians([lambda: calls.append("a"), lambda: calls.append("b")],
                                      iters=3, warmup=1, device=torch.device("cpu"))
    assert calls == ["a", "b"] + ["a", "b"] * 3 and len(meds) == 2 and all(m >= 0 for m in meds)


def test_penalty_paths_do_the_same_work(capsys):
    """--penalty-path plain times the penalty through F.conv2d (ATen's double backward): the
    same FLOPs as train.py's path, so their images/s compare like for like."""
    rows = {}
    for path in ("fast", "plain"):
        assert bench.main(["--preset", "tiny", "--res", "16", "--precision", "fp32", "--iters", "1",
                           "--warmup", "0", "--batch", "4", "--penalty-path", path]) == 0
        (rows[path],) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert rows[path]["penalty_path"] == path
    assert rows["plain"]["gflop_per_image"] == pytest.approx(rows["fast"]["gflop_per_image"], rel=0.01)


def test_bench_rejects_resolutions_outside_the_preset(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--preset", "tiny", "--res", "64"])
    assert e.value.code == 2 and "--res" in capsys.readouterr().err


def test_flop_count_of_a_convolution_and_its_double_backward():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    fwd = 2 * 2 * 3 * 4 * 9 * 8 * 8  # 2 FLOPs per multiply-add
    assert bench.count_flops(lambda: F.conv2d(x, w, padding=1)) == fwd

    def fwd_bwd():
        F.conv2d(x, w, padding=1).sum().backward()
    assert bench.count_flops(fwd_bwd) == 3 * fwd  # forward, grad input, grad weight

    def gradient_penalty_like():
        (g,) = torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), x, create_graph=True)
        g.pow(2).sum().backward()
    assert bench.count_flops(gradient_penalty_like) > 3 * fwd  # the double backward is counted too


def test_largest_conv_of_the_full_preset():
    cfg = bench.modules.preset("full")
    assert bench.largest_conv(cfg, 16) == (512, 512, 16)
    # 512 -> 256 at 32x32 (the first conv after upsampling) costs twice a 512 -> 512 at 16x16
    assert bench.largest_conv(cfg, 64) == (512, 256, 32)


def test_bf16_and_fp32_steps_from_the_same_state_give_close_losses():
    reals = torch.rand(8, 1, 16, 16) * 2 - 1
    out = {}
    for precision in ("fp32", "bf16"):
        t = bench.make_trainer("tiny", 8, precision, channels_last=precision == "bf16",
                               device=torch.device("cpu"), seed=3)
        torch.manual_seed(0)
        import random
        random.seed(0)
        out[precision] = t.train_step([reals], 2, 0.5, 1e-3)
    for key in ("loss_d", "loss_g", "wdist"):
        a, b = out["fp32"][key].item(), out["bf16"][key].item()
        assert b == pytest.approx(a, rel=0.05, abs=0.05), key
    assert out["bf16"]["gp"].item() == pytest.approx(out["fp32"]["gp"].item(), rel=0.1, abs=0.02)


def test_width_flags_change_the_timed_networks(capsys):
    """--channels and --critic-channels build the networks train.py would: narrower layers at 16x16
    mean fewer FLOPs per image, the generator's and the critic's apart."""
    flops = {}
    for name, extra in {"preset": [], "both": ["--channels", "16:4"],
                        "critic": ["--critic-channels", "16:4"]}.items():
        assert bench.main(["--preset", "tiny", "--res", "16", "--precision", "fp32", "--iters", "1",
                           "--warmup", "0", "--batch", "4", *extra]) == 0
        (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        flops[name] = row["gflop_per_image"]
    assert flops["both"] < flops["critic"] < flops["preset"]


def test_bad_width_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--preset", "tiny", "--critic-channels", "64:16"])
    assert e.value.code == 2 and "--critic-channels" in capsys.readouterr().err
