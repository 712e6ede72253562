"""Shared test set-up and builders.

Set-up: make the top-level scripts importable from tests, whatever the working folder; keep the demo-set
cache of a test session in one temporary folder (also for the scripts the tests start, which inherit the
environment), never the user's home; run torch on one thread (the test networks are tiny, and a second thread
only adds synchronisation, badly so on a busy machine).

Builders: `blobs` (smooth random uint8 images), `make_checkpoint` and the `ckpts` fixture (tiny AD and NC
checkpoints), the `siblings` fixture (tiny AD and NC children of one parent), `one_line_error` (a script's main
refusing its input).
Tests that take more than a few seconds are marked `slow`: `pytest -m "not slow"` leaves them out.
"""
import atexit
import os
import shutil
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if "BRAIN_STYLEGAN_CACHE" not in os.environ:
    os.environ["BRAIN_STYLEGAN_CACHE"] = tempfile.mkdtemp(prefix="brain-stylegan-test-cache-")
    atexit.register(shutil.rmtree, os.environ["BRAIN_STYLEGAN_CACHE"], True)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # also for the scripts the tests start

import torch  # noqa: E402

import modules  # noqa: E402

torch.set_num_threads(1)


def one_line_error(main, argv, capsys) -> str:
    """Run a script's main(argv), expect exit code 2 and one 'error: ...' line on stderr; return it."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def blobs(n: int, res: int, seed: int) -> torch.Tensor:
    """uint8 (n, 1, res, res) smooth random images: brain-like in having structure at several scales."""
    g = torch.Generator().manual_seed(seed)
    x = sum(torch.nn.functional.interpolate(torch.randn(n, 1, s, s, generator=g), size=res, mode="bicubic",
                                            align_corners=True) / s ** 0.5 for s in (2, 4, 8))
    return ((x - x.min()) / (x.max() - x.min()) * 255).round().to(torch.uint8)


PARENT = {"path": "runs/all/checkpoint.pt", "sha256": "abc", "images_seen": 0}  # a child's record of its parent
SIBLING_CONFIG = {"data": "demo", "demo_count": 48, "seed": 0}  # what evaluate.py reads of train.py's config


def make_checkpoint(path, class_name: str, seed: int, parent: dict | None = None, nudge: float = 0.0,
                    train_config: dict | None = None) -> str:
    """A tiny (16x16) checkpoint as train.py would write it: noise that matters and a tracked average w.

    parent: the record of the checkpoint it was fine-tuned from (--init-from); nudge: the SD of Gaussian noise
    added to the generator's weights after they are made from `seed`, a stand-in for fine-tuning (drawn from
    `seed` and the class, so two classes built from one seed share their weights up to the nudge)."""
    torch.manual_seed(seed)
    cfg = modules.preset("tiny")
    g, d = modules.Generator(cfg), modules.Critic(cfg)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, modules.NoiseInjection):
                m.weight.fill_(0.3)
        g.mapping.w_avg.copy_(g.mapping(torch.randn(256, cfg.z_dim)).mean(0))
        nudges = torch.Generator().manual_seed(1000 * seed + sum(map(ord, class_name)))
        for p in g.parameters():
            p.add_(nudge * torch.randn(p.shape, generator=nudges))
    modules.Checkpoint(class_name=class_name, model_config=cfg.to_dict(), step=cfg.max_step, alpha=1.0,
                       generator_ema=g.state_dict(), generator=g.state_dict(), critic=d.state_dict(),
                       parent=dict(parent or {}), train_config=dict(train_config or {})).save(str(path))
    return str(path)


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory) -> dict[str, str]:
    """class -> path of a tiny checkpoint of that class (different weights per class), made once per session."""
    root = tmp_path_factory.mktemp("runs")
    return {cls: make_checkpoint(root / cls / "checkpoint.pt", cls, seed=i) for i, cls in enumerate(("AD", "NC"))}


@pytest.fixture(scope="session")
def siblings(tmp_path_factory) -> dict[str, str]:
    """class -> path of a tiny child of one parent (PARENT): the same weights, the AD child's nudged a little
    (fine-tuning's stand-in), trained on the demo set as far as evaluate.py can tell (SIBLING_CONFIG)."""
    root = tmp_path_factory.mktemp("siblings")
    return {cls: make_checkpoint(root / cls / "checkpoint.pt", cls, seed=0, parent=PARENT,
                                 nudge=0.02 if cls == "AD" else 0.0, train_config=SIBLING_CONFIG)
            for cls in ("AD", "NC")}


TINY_TRAIN = ["--preset", "tiny", "--demo-count", "48", "--device", "cpu"]  # train.py's flags for a run in seconds


def train_main(args) -> int:
    """train.py's main on any argument values (paths, numbers), in this process; its exit code."""
    import train
    return train.main(list(map(str, args)))

