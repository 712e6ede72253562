"""Class generators fine-tuned from one parent: --class all pools both classes, --init-from starts a
child from the parent's final state exactly, and every wrong parent is refused in one line."""
import json

import pytest
import torch

import core
import modules
import train
from conftest import TINY_TRAIN, train_main


pytestmark = pytest.mark.slow  # every test here trains


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    out = tmp_path_factory.mktemp("parent") / "all"
    assert train_main(["--class", "all", "--out", out, *TINY_TRAIN]) == 0
    return out / "checkpoint.pt"


def test_parent_trains_on_both_classes_pooled(parent):
    state = modules.Checkpoint.load(str(parent))
    assert state.class_name == "all" and state.parent == {}
    config = json.load(open(parent.parent / "config.json"))["train"]
    assert config["class_name"] == "all" and config["init_from"] is None
    import dataset
    pooled = dataset.load_slices(None, "all", "train", 16, demo_count=48)
    ad = dataset.load_slices(None, "AD", "train", 16, demo_count=48)
    nc = dataset.load_slices(None, "NC", "train", 16, demo_count=48)
    assert torch.equal(pooled.images, torch.cat([ad.images, nc.images])) and pooled.class_name == "all"
    assert len(set(pooled.subjects)) == len(set(ad.subjects)) + len(set(nc.subjects))  # no subject merged


def test_init_from_loads_exactly_the_parents_state(parent, tmp_path):
    out = tmp_path / "AD"
    assert train_main(["--class", "AD", "--init-from", parent, "--out", out, "--device", "cpu", "--stop-kimg", 0]) == 0
    p, c = modules.Checkpoint.load(str(parent)), modules.Checkpoint.load(str(out / "checkpoint.pt"))
    for name in ("generator", "generator_ema", "critic"):
        for k, v in getattr(p, name).items():
            torch.testing.assert_close(getattr(c, name)[k], v, rtol=0, atol=0, msg=f"{name}.{k}")
    assert c.optim_g["state"].keys() == p.optim_g["state"].keys()
    # before any step the child's first sample is the parent's, for the same z and noise
    same = modules.sample(p.ema_generator(), range(4)), modules.sample(c.ema_generator(), range(4))
    torch.testing.assert_close(*same, rtol=0, atol=0)
    assert c.parent == {"path": str(parent.resolve()), "sha256": core.file_sha256(str(parent)),
                        "images_seen": p.images_seen}
    assert c.class_name == "AD" and c.iteration == 0 and c.step == p.step
    # it starts where the final phase starts: the phases before it are the parent's
    cfg = train.TrainConfig(**c.train_config)
    assert c.images_seen == train.final_phase_start(p.step, cfg)
    assert train.schedule(c.images_seen, p.step, cfg).name == "stable"


def test_init_generator_ema_starts_the_trained_generator_from_the_parents_ema(parent, tmp_path):
    out = tmp_path / "AD"
    assert train_main(["--class", "AD", "--init-from", parent, "--out", out, "--device", "cpu", "--stop-kimg", 0,
                       "--init-generator", "ema"]) == 0
    p, c = modules.Checkpoint.load(str(parent)), modules.Checkpoint.load(str(out / "checkpoint.pt"))
    assert any(not torch.equal(p.generator[k], p.generator_ema[k]) for k in p.generator)  # they differ to start with
    for k, v in p.generator_ema.items():
        torch.testing.assert_close(c.generator[k], v, rtol=0, atol=0, msg=k)
        torch.testing.assert_close(c.generator_ema[k], v, rtol=0, atol=0, msg=k)
    for k, v in p.critic.items():
        torch.testing.assert_close(c.critic[k], v, rtol=0, atol=0, msg=k)
    assert json.load(open(out / "config.json"))["train"]["init_generator"] == "ema"
    with pytest.raises(ValueError, match="--init-generator ema.*--init-from"):
        train.TrainConfig(init_generator="ema")
    with pytest.raises(ValueError, match="--init-generator"):
        train.TrainConfig(init_generator="best", init_from="p.pt")


def test_a_child_fine_tunes_on_its_parents_demo_set_whatever_its_seed(parent, tmp_path):
    parent_train = json.load(open(parent.parent / "config.json"))["train"]
    parent_data = parent_train["seed"] if parent_train["data_seed"] is None else parent_train["data_seed"]
    for extra, want in (([], parent_data), (["--data-seed", parent_data + 5], parent_data + 5)):
        out = tmp_path / f"AD{len(extra)}"
        assert train_main(["--class", "AD", "--init-from", parent, "--out", out, "--device", "cpu",
                           "--seed", parent_train["seed"] + 3, "--stop-kimg", 0, *extra]) == 0
        child = json.load(open(out / "config.json"))["train"]
        assert child["seed"] == parent_train["seed"] + 3 and child["data_seed"] == want


def test_children_train_their_class_and_share_the_parent(parent, tmp_path):
    shas = []
    for cls in ("AD", "NC"):
        out = tmp_path / cls
        assert train_main(["--class", cls, "--init-from", parent, "--out", out, "--device", "cpu",
                         "--final-kimg", 0.1]) == 0
        c = modules.Checkpoint.load(str(out / "checkpoint.pt"))
        rows = [json.loads(line) for line in open(out / "stats.jsonl")]
        assert rows[0]["iteration"] == 1 and rows[-1]["images_seen"] == c.images_seen
        assert c.images_seen - train.final_phase_start(c.step, train.TrainConfig(**c.train_config)) >= 100
        assert c.class_name == cls and json.load(open(out / "config.json"))["train"]["class_name"] == cls
        shas.append(c)
    assert modules.shared_parent(*shas) == core.file_sha256(str(parent))
    g_ad, g_nc = shas[0].ema_generator(), shas[1].ema_generator()
    assert not torch.equal(modules.sample(g_ad, [0]), modules.sample(g_nc, [0]))  # they did move apart
    # a requeued child resumes (--init-from is then ignored) and keeps its parent record
    assert train_main(["--class", "AD", "--init-from", parent, "--out", tmp_path / "AD", "--device", "cpu",
                     "--resume", "auto", "--final-kimg", 0.15]) == 0
    assert modules.Checkpoint.load(str(tmp_path / "AD" / "checkpoint.pt")).parent == shas[0].parent


def test_wrong_parents_are_refused_in_one_line(parent, tmp_path, capsys):
    def refused(argv) -> str:
        assert train_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        return err
    assert "--class all trains the parent" in refused(["--class", "all", "--init-from", parent, "--out", tmp_path / "x"])
    child = tmp_path / "NC"
    assert train_main(["--class", "NC", "--out", child, *TINY_TRAIN, "--stop-kimg", 0.05]) == 0
    capsys.readouterr()
    assert "is a class NC checkpoint" in refused(["--class", "AD", "--init-from", child / "checkpoint.pt",
                                                  "--out", tmp_path / "y"])
    assert "another architecture" in refused(["--class", "AD", "--init-from", parent, "--out", tmp_path / "z",
                                              "--channels", "4:8,8:8,16:8"])
    assert "drop --preset" in refused(["--class", "AD", "--init-from", parent, "--out", tmp_path / "w",
                                       "--preset", "quick"])
    early = tmp_path / "early"
    assert train_main(["--class", "all", "--out", early, *TINY_TRAIN, "--stop-kimg", 0.2]) == 0
    capsys.readouterr()
    assert "has not reached its final resolution" in refused(["--class", "AD", "--init-from",
                                                              early / "checkpoint.pt", "--out", tmp_path / "v"])
    assert "does not exist" in refused(["--class", "AD", "--init-from", tmp_path / "none.pt", "--out", tmp_path / "u"])
    assert not any((tmp_path / d).exists() for d in "xyzwvu")  # a refusal writes nothing


def test_a_parent_is_not_evaluated_as_a_class_generator(parent, capsys):
    import evaluate
    from conftest import one_line_error
    err = one_line_error(evaluate.main, ["--ckpt", str(parent), "--n", "16"], capsys)
    assert "--class all parent" in err and "--init-from" in err
