"""Runs that survive clusters and mistakes: a signal saves a checkpoint that resumes exactly,
one run per folder, --resume auto, and a full disk that leaves the last checkpoint whole."""
import errno
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

import modules
import train
from conftest import ROOT, TINY_TRAIN, train_main



def iterations(folder) -> list[int]:
    return [json.loads(line)["iteration"] for line in open(folder / "stats.jsonl")]


def weights(path) -> dict:
    s = torch.load(path, weights_only=True)
    return {f"{n}.{k}": v for n in ("generator", "critic", "generator_ema") for k, v in s[n].items()}


def start(out, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "train.py", "--class", "NC", "--out", str(out), *TINY_TRAIN, *map(str, extra)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_rows(proc, out, rows: int = 1, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (out / "stats.jsonl").exists() and len(open(out / "stats.jsonl").readlines()) >= rows:
            return
        time.sleep(0.05)
    raise AssertionError(f"no stats line in {out}: {proc.poll()} {proc.stderr.read() if proc.poll() else ''}")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run that every interrupted-and-resumed run must equal bit for bit."""
    out = tmp_path_factory.mktemp("straight") / "NC"
    assert train_main(["--class", "NC", "--out", out, *TINY_TRAIN, "--log-every", 7]) == 0
    return out


@pytest.mark.parametrize("signals,code", [(["SIGTERM"], 143), (["SIGINT"], 130), (["SIGUSR1"], 0),
                                          (["SIGTERM", "SIGINT"], 143)],
                         ids=["term", "int", "usr1", "second-signal-during-save"])
@pytest.mark.slow
def test_signal_saves_the_iteration_in_flight_and_resume_is_exact(straight, tmp_path, signals, code):
    out = tmp_path / "NC"
    proc = start(out, "--log-every", 7)
    wait_for_rows(proc, out)
    moment = random.uniform(0.0, 0.6)
    time.sleep(moment)  # a random moment: mid-iteration, mid-log or mid-periodic-save
    for name in signals:
        proc.send_signal(getattr(signal, name))
        time.sleep(0.02)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (moment, err)
    lines = err.strip().splitlines()
    assert lines[-2].startswith(f"{signals[0]}: stopped after iteration") and "images seen" in lines[-2], err
    assert lines[-1].startswith("resume with: python train.py ") and lines[-1].endswith(" --resume"), err

    state = modules.load_checkpoint(str(out / "checkpoint.pt"))
    last = json.loads(open(out / "stats.jsonl").readlines()[-1])
    assert (state["iteration"], state["images_seen"]) == (last["iteration"], last["images_seen"])
    assert f"iteration {state['iteration']}, {state['images_seen']} images seen" in lines[-2]
    assert 0 < state["images_seen"] < torch.load(straight / "checkpoint.pt", weights_only=True)["images_seen"]
    assert (out / "NC_critic_loss.png").exists() and (out / "NC_generator_loss.png").exists()
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]

    # The printed command, run as printed, finishes the run exactly as if it had never stopped.
    cmd = shlex.split(lines[-1][len("resume with: "):])
    r = subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = weights(straight / "checkpoint.pt"), weights(out / "checkpoint.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    its = iterations(out)
    assert its == sorted(set(its)), "stats.jsonl holds a duplicated or out-of-order iteration"
    assert set(iterations(straight)) <= set(its)  # every regular log line, plus the stop's own


@pytest.mark.slow
def test_a_signal_before_training_saves_nothing(tmp_path):
    out = tmp_path / "early"
    proc = start(out, "--minutes", 5)  # the speed probe takes seconds before the first iteration
    deadline = time.time() + 60
    while not (out / train.RunLock.NAME).exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "nothing new to save" in err and "python train.py" in err
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.slow
def test_second_process_on_a_locked_folder_stops_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "NC"
    assert train_main(["--class", "NC", "--out", out, *TINY_TRAIN, "--stop-kimg", 0.1]) == 0
    before = {f: open(out / f, "rb").read() for f in os.listdir(out) if (out / f).is_file()}
    lock = train.RunLock(str(out)).acquire()  # this test process plays the running train.py
    try:
        for extra in (["--resume", "auto"], ["--seed", "5"]):
            r = subprocess.run([sys.executable, "train.py", "--class", "NC", "--out", str(out), *TINY_TRAIN, *extra],
                               cwd=ROOT, capture_output=True, text=True)
            assert r.returncode == 2, r.stderr
            assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
            assert f"pid {os.getpid()}" in r.stderr and str(out) in r.stderr
    finally:
        lock.release()
    after = {f: open(out / f, "rb").read() for f in os.listdir(out) if (out / f).is_file()}
    assert after.keys() == before.keys()
    assert all(after[f] == before[f] for f in before if f != train.RunLock.NAME)


@pytest.mark.slow
def test_two_runs_started_together_leave_one_honest_record(tmp_path):
    """The report's scenario: the same --out twice, the second with --seed 5."""
    out = tmp_path / "NC"
    first = start(out, "--final-kimg", 50, "--log-every", 1)  # long enough to still hold the folder
    wait_for_rows(first, out)
    second = start(out, "--final-kimg", 50, "--log-every", 1, "--seed", 5)
    _, err2 = second.communicate(timeout=120)
    assert second.returncode == 2 and f"pid {first.pid}" in err2 and err2.count("\n") == 1, err2
    first.send_signal(signal.SIGTERM)
    _, err1 = first.communicate(timeout=120)
    assert first.returncode == 143, err1
    its = iterations(out)
    assert its == list(range(1, len(its) + 1))
    assert json.load(open(out / "config.json"))["train"]["seed"] == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == its[-1]


@pytest.mark.slow
def test_resume_auto_starts_an_empty_folder_and_continues_an_existing_one(tmp_path, capsys):
    out = tmp_path / "NC"
    assert train_main(["--class", "NC", "--out", out, *TINY_TRAIN, "--resume", "auto", "--stop-kimg", 0.1]) == 0
    assert "starting" in capsys.readouterr().out
    first = torch.load(out / "checkpoint.pt", weights_only=True)["images_seen"]
    assert train_main(["--class", "NC", "--out", out, *TINY_TRAIN, "--resume", "auto", "--stop-kimg", 0.2]) == 0
    assert "continuing" in capsys.readouterr().out
    second = torch.load(out / "checkpoint.pt", weights_only=True)["images_seen"]
    assert 100 <= first < 200 <= second
    its = iterations(out)
    assert its == sorted(set(its))
    # plain --resume keeps its meaning: refused where there is nothing to resume
    assert train_main(["--class", "NC", "--out", tmp_path / "none", *TINY_TRAIN, "--resume"]) == 2
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_a_full_disk_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "NC"
    assert train_main(["--class", "NC", "--out", out, *TINY_TRAIN, "--stop-kimg", 0.1, "--log-every", 1]) == 0
    good = open(out / "checkpoint.pt", "rb").read()
    real_fsync = os.fsync

    def disk_full_for_checkpoints(fd):  # the kernel reports ENOSPC when the data is flushed
        if os.fstat(fd).st_size > 100_000:  # checkpoints, not the small json and png files
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", disk_full_for_checkpoints)
    capsys.readouterr()
    assert train_main(["--class", "NC", "--out", out, *TINY_TRAIN, "--resume", "--ckpt-every", 0.05]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: could not write ")
    assert str(out / "checkpoint.pt") in err and "No space left on device" in err and "--resume" in err
    assert open(out / "checkpoint.pt", "rb").read() == good
    modules.load_checkpoint(str(out / "checkpoint.pt"))
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]

    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed: the run continues from the old checkpoint
    assert train_main(["--class", "NC", "--out", out, *TINY_TRAIN, "--resume", "--stop-kimg", 0.2]) == 0
    its = iterations(out)
    assert its == list(range(1, len(its) + 1))


def test_resume_command_drops_any_resume_flag():
    assert train.resume_command(["--class", "AD", "--resume", "auto", "--seed", "3"]) == \
        "python train.py --class AD --seed 3 --resume"
    assert train.resume_command(["--class", "AD", "--resume", "--out", "my runs/AD"]) == \
        "python train.py --class AD --out 'my runs/AD' --resume"
    assert train.resume_command(["--class", "NC", "--resume=auto"], world=4) == \
        "torchrun --nproc_per_node=4 train.py --class NC --resume"
