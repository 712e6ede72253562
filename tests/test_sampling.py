"""sampling.py: how much of a generator's variety its noise inputs carry (noise_share)."""
import pytest
import torch

import modules
import sampling
from modules import Generator, preset


def test_noise_share_splits_the_variance_by_the_law_of_total_variance(monkeypatch):
    """A stand-in generator whose image is a per-seed part (variance 1) plus a per-draw part (variance 3): the
    noise's share is 3 / 4, which a naive variance of the per-seed means (3 / (3 + 1 + 3 / draws)) misses."""
    def fake_sample(g, seeds, *, batch, noise_seed):
        per_seed = torch.stack([torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(1000 + s))
                                for s in seeds])
        noise = torch.randn(len(seeds), 1, 32, 32, generator=torch.Generator().manual_seed(noise_seed)) * 3 ** 0.5
        return (per_seed + noise) * 0.1  # well inside the [-1, 1] clamp
    monkeypatch.setattr(modules, "sample", fake_sample)
    share = sampling.noise_share(Generator(preset("tiny")), n=64, draws=4)
    assert share["total"] == pytest.approx(0.75, abs=0.02)
    assert (share["n_w"], share["draws"]) == (64, 4)


def test_noise_share_of_real_generators():
    g = Generator(preset("tiny")).eval()  # noise weights start at 0: all variety is w's
    assert sampling.noise_share(g) == {"total": 0.0, "by_resolution": {4: 0.0, 8: 0.0, 16: 0.0}, "n_w": 64, "draws": 4}
    g.blocks[0][0].noise.weight.data.fill_(3.0)  # noise on the 4x4 constant only: it draws the layout
    share = sampling.noise_share(g)
    assert share["total"] > 0.3 and share["by_resolution"][8] == share["by_resolution"][16] == 0.0
    assert share["by_resolution"][4] == pytest.approx(share["total"])
    assert g.blocks[0][0].noise.weight.eq(3.0).all()  # the generator itself is left as it was
    g = Generator(preset("tiny", noise_min_res=8)).eval()
    assert set(sampling.noise_share(g)["by_resolution"]) == {8, 16}
    assert sampling.noise_share_text({"total": 0.87, "by_resolution": {4: 0.83, 8: 0.0}}) == "87% (4 px 83%, 8 px 0%)"
