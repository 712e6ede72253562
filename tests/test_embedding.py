"""embedding.py on tiny checkpoints and a small demo set: plots, CSVs, summary, bad input."""
import csv
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from collections import Counter

import pytest
from PIL import Image

import embedding
import modules
import sampling
from conftest import ROOT, one_line_error

N, N_REAL, DEMO_COUNT = 6, 8, 20  # per class; the demo set has 10 slices per subject


def rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_writes_both_plots_with_their_numbers(ckpts, tmp_path, capsys):
    embedding.main(["--ad", ckpts["AD"], "--nc", ckpts["NC"], "--out", str(tmp_path),
                    "--n", str(N), "--n-real", str(N_REAL), "--demo-count", str(DEMO_COUNT)])
    for name in ("tsne_visualization", "tsne_images"):
        with Image.open(tmp_path / f"{name}.png") as im:
            assert im.width > 400 and im.height > 400
    w = rows(tmp_path / "tsne_visualization.csv")
    assert len(w) == 2 * N and list(w[0]) == ["x", "y", "label", "seed"]  # not children of one parent: no lines
    assert [r["label"] for r in w] == ["AD"] * N + ["NC"] * N
    assert [int(r["seed"]) for r in w] == list(range(N)) * 2
    images = rows(tmp_path / "tsne_images.csv")
    assert len(images) == 2 * N + 2 * N_REAL
    counts = Counter((r["group"], r["label"]) for r in images)
    assert counts == {("generated", "AD"): N, ("generated", "NC"): N, ("real", "AD"): N_REAL, ("real", "NC"): N_REAL}
    assert all(r["nearest_real_label"] in ("AD", "NC") and float(r["nearest_real_distance"]) > 0 for r in images)
    summary = json.loads((tmp_path / "tsne_images.json").read_text())
    own = summary["nearest_real_is_own_class"]
    for cls in ("AD", "NC"):  # the summary is the CSV's numbers
        gen = [r for r in images if r["group"] == "generated" and r["label"] == cls]
        assert own[cls] == pytest.approx(sum(r["nearest_real_label"] == cls for r in gen) / N)
    real = [r for r in images if r["group"] == "real"]
    assert summary["real_nearest_other_subject_is_own_class"] == \
        pytest.approx(sum(r["nearest_real_label"] == r["label"] for r in real) / len(real))
    real_median = statistics.median(float(r["nearest_real_distance"]) for r in real)
    for cls in ("AD", "NC"):  # median distance of the class's samples over that of the real slices, from the CSV
        gen = statistics.median(float(r["nearest_real_distance"]) for r in images
                                if r["group"] == "generated" and r["label"] == cls)
        assert summary["distance_to_nearest_real_vs_real"][cls] == pytest.approx(gen / real_median, rel=2e-3)
    assert summary["n_real"] == {"AD": N_REAL, "NC": N_REAL}
    out = capsys.readouterr().out
    assert "Nearest real slice of its own class: generated AD" in out
    steered = {cls: 1 - sampling.noise_share(modules.load_generator(ckpts[cls]), seed=0)["total"] for cls in ckpts}
    assert f"w steers AD {steered['AD']:.0%}, NC {steered['NC']:.0%} of the samples' pixel variance" in out


def test_children_of_one_parent_are_joined_seed_by_seed(siblings, tmp_path, capsys):
    embedding.main(["--ad", siblings["AD"], "--nc", siblings["NC"], "--out", str(tmp_path),
                    "--n", str(N), "--n-real", str(N_REAL), "--demo-count", str(DEMO_COUNT)])
    w = rows(tmp_path / "tsne_visualization.csv")
    assert list(w[0]) == ["x", "y", "label", "seed", "w_distance_to_partner"]
    gens = {c: modules.load_generator(siblings[c]) for c in ("AD", "NC")}
    want = (modules.styles(gens["AD"], range(N)) - modules.styles(gens["NC"], range(N))).norm(dim=1).tolist()
    for cls, part in (("AD", w[:N]), ("NC", w[N:])):  # both partners of a seed carry their distance in W
        assert [r["label"] for r in part] == [cls] * N and [int(r["seed"]) for r in part] == list(range(N))
        assert [float(r["w_distance_to_partner"]) for r in part] == pytest.approx(want, abs=2e-6)
    assert min(want) > 0  # the AD child is nudged away from the parent's weights
    assert f"children of one parent: {N} lines join each seed's AD and NC w" in capsys.readouterr().out


def error_of(capsys, argv) -> str:
    return one_line_error(embedding.main, argv, capsys)


def test_bad_input_gives_one_line_errors(ckpts, tmp_path, capsys):
    both = ["--ad", ckpts["AD"], "--nc", ckpts["NC"], "--out", str(tmp_path)]
    err = error_of(capsys, ["--ad", ckpts["NC"], "--nc", ckpts["NC"], "--out", str(tmp_path)])
    assert "--ad" in err and "class NC" in err
    missing = str(tmp_path / "no" / "checkpoint.pt")
    err = error_of(capsys, ["--ad", ckpts["AD"], "--nc", missing, "--out", str(tmp_path)])
    assert missing in err and "python train.py --class NC" in err
    assert "does not exist" in error_of(capsys, both + ["--data", str(tmp_path / "no_such_data")])
    if importlib.util.find_spec("umap") is None:
        assert "umap-learn" in error_of(capsys, both + ["--method", "umap"])
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.slow
def test_command_line_exit_code(ckpts, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00" * 100)
    r = subprocess.run([sys.executable, "embedding.py", "--ad", str(corrupt), "--nc", ckpts["NC"],
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "unreadable" in r.stderr and r.stderr.count("\n") == 1, r.stderr
