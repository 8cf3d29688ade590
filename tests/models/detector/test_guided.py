"""Guided matching: matches made again among the pairs a first homography maps close together."""

from __future__ import annotations

import math

import pytest
import torch

from neurocorr.models.detector import repeatability as repeatability_module
from neurocorr.models.detector.guided import GuidedMatching, guided_matches, pair_distance
from neurocorr.models.detector.matching import descriptor_distance, match_mnn
from neurocorr.models.detector.repeatability import evaluate_pair

EYE = torch.eye(3, dtype=torch.float64)
SHIFT = torch.tensor([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def repeated_structure(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image 2 is image 1 shifted by ``SHIFT``; all points share one of two descriptors (repeated windows),
    so that descriptor matching alone cannot tell them apart."""
    g = torch.Generator().manual_seed(seed)
    xy1 = torch.rand(n, 2, generator=g, dtype=torch.float64) * 100
    xy2 = xy1 + torch.tensor([5.0, -3.0], dtype=torch.float64)
    kinds = torch.tensor([[1.0, 0.0], [0.0, 1.0]])[torch.arange(n) % 2]
    return xy1, xy2, kinds, kinds + 0.01 * torch.randn(n, 2, generator=g)


def test_smoke_and_shapes() -> None:
    xy1, xy2, d1, d2 = repeated_structure()
    m = guided_matches(xy1, xy2, d1, d2, SHIFT, 1.5)
    assert m.index.dtype == torch.long and m.index.shape[1] == 2 and m.distance.shape == (m.index.shape[0],)
    assert (m.distance[1:] >= m.distance[:-1]).all()                    # sorted by descriptor distance


def test_geometry_recovers_every_match_that_repeated_descriptors_hide() -> None:
    xy1, xy2, d1, d2 = repeated_structure()
    assert match_mnn(d1, d2).index.shape[0] <= 2                        # one mutual match per descriptor kind
    m = guided_matches(xy1, xy2, d1, d2, SHIFT, 1.5)
    assert sorted(m.index.tolist()) == [[i, i] for i in range(12)]


def test_only_pairs_within_the_radius_and_mutual_best_are_kept() -> None:
    xy1 = torch.tensor([[10.0, 10.0], [50.0, 50.0]], dtype=torch.float64)
    xy2 = torch.tensor([[10.0, 11.0], [50.0, 52.0], [10.5, 10.0]], dtype=torch.float64)
    d1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d2 = torch.tensor([[0.9, 0.1], [0.0, 1.0], [1.0, 0.0]])
    assert guided_matches(xy1, xy2, d1, d2, EYE, 1.5).index.tolist() == [[0, 2]]   # the best of two near ones
    assert sorted(guided_matches(xy1, xy2, d1, d2, EYE, 2.5).index.tolist()) == [[0, 2], [1, 1]]  # 2 px away counts
    assert guided_matches(xy1, xy2, d1, d2, EYE, 0.2).index.shape == (0, 2)   # nothing that close
    assert guided_matches(xy1[:0], xy2, d1[:0], d2, EYE, 1.5).index.shape == (0, 2)


def test_multi_level_descriptors_use_the_closest_level_pair() -> None:
    g = torch.Generator().manual_seed(3)
    d1, d2 = torch.randn(6, 3, 8, generator=g), torch.randn(6, 3, 8, generator=g)
    full = descriptor_distance(d1, d2)
    rows, cols = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    torch.testing.assert_close(pair_distance(d1[rows.flatten()], d2[cols.flatten()]).view(6, 6), full)
    xy = torch.rand(6, 2, generator=g, dtype=torch.float64) * 50
    everywhere = guided_matches(xy, xy, d1, d2, EYE, 1e3)                 # a radius that excludes nothing: plain MNN
    plain = match_mnn(d1, d2)
    assert everywhere.index.tolist() == plain.index.tolist()
    torch.testing.assert_close(everywhere.distance, plain.distance)


def test_bad_input_is_refused() -> None:
    xy1, xy2, d1, d2 = repeated_structure()
    with pytest.raises(ValueError, match=r"points \(N, 2\)"):
        guided_matches(xy1[:, :1], xy2, d1, d2, EYE)
    with pytest.raises(ValueError, match="one descriptor"):
        guided_matches(xy1, xy2, d1[:3], d2, EYE)
    with pytest.raises(ValueError, match="one shape"):
        guided_matches(xy1, xy2, d1, torch.zeros(12, 3), EYE)
    with pytest.raises(ValueError, match=r"homography \(3, 3\)"):
        guided_matches(xy1, xy2, d1, d2, EYE[:2])
    with pytest.raises(ValueError, match="radius"):
        guided_matches(xy1, xy2, d1, d2, EYE, 0.0)
    with pytest.raises(ValueError, match="radius"):
        GuidedMatching(-1.0)


def test_module_equals_function() -> None:
    xy1, xy2, d1, d2 = repeated_structure(seed=5)
    a, b = GuidedMatching(2.0)(xy1, xy2, d1, d2, SHIFT), guided_matches(xy1, xy2, d1, d2, SHIFT, 2.0)
    assert a.index.tolist() == b.index.tolist() and torch.equal(a.distance, b.distance)


def test_evaluation_estimates_again_from_the_guided_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty points of two repeated descriptors give at most two mutual matches; guided by the first estimate (from
    those and eight distinct points) all twenty-eight are matched, and the second estimate is made from them."""
    g = torch.Generator().manual_seed(7)
    xy = torch.rand(28, 2, generator=g, dtype=torch.float64) * 56 + 4
    desc = torch.cat([torch.eye(8, 10), torch.zeros(20, 10)])
    desc[8:, 8 + torch.arange(20) % 2] = 1.0                              # twenty points, two descriptor kinds
    kp = {"xy": xy, "score": torch.linspace(1, 0, 28), "desc": desc}
    seen = []
    original = repeatability_module.steady_corner_error
    monkeypatch.setattr(repeatability_module, "steady_corner_error",
                        lambda xy1, *a, **k: seen.append(xy1.shape[0]) or original(xy1, *a, **k))
    once = evaluate_pair(kp, kp, EYE, (64, 64), (64, 64))
    twice = evaluate_pair(kp, kp, EYE, (64, 64), (64, 64), guided_px=1.5)
    # at most 8 + 2 mutual matches (equal descriptors tie, and cdist's rounding may break a tie either way)
    assert seen[0] <= 10 and seen == [once["n_h_matches"], 28]
    assert twice["n_h_matches"] == 28
    assert twice["h_err"] < 1e-6 and math.isfinite(twice["h_err_floor"])


def test_predict_writes_the_guided_matches_and_their_homography() -> None:
    from types import SimpleNamespace

    from neurocorr.models.detector.predict import matches_and_homography

    g = torch.Generator().manual_seed(11)
    xy = torch.rand(28, 2, generator=g, dtype=torch.float64) * 200
    desc = torch.cat([torch.eye(8, 10), torch.zeros(20, 10)])
    desc[8:, 8 + torch.arange(20) % 2] = 1.0
    fa = {"xy": xy, "desc": desc}
    fb = {"xy": xy + torch.tensor([5.0, -3.0], dtype=torch.float64), "desc": desc}

    def context(guided_px: float) -> SimpleNamespace:
        evaluation = SimpleNamespace(ransac_method="usac", guided_px=guided_px)
        return SimpleNamespace(model=SimpleNamespace(evaluation=evaluation, match_steps=lambda: None))

    m0, *_, H0 = matches_and_homography(context(0.0), fa, fb, 3.0)
    m, xy_a, xy_b, keep, H = matches_and_homography(context(1.5), fa, fb, 3.0)
    assert m0.index.shape[0] <= 10 and H0 is not None
    assert sorted(m.index.tolist()) == [[i, i] for i in range(28)] and keep.all()
    torch.testing.assert_close(xy_b - xy_a, torch.tensor([[5.0, -3.0]], dtype=torch.float64).expand(28, 2))
    torch.testing.assert_close(H, SHIFT, atol=1e-6, rtol=0)


@pytest.mark.parametrize("value", [-1.0, "near", True, 200.0])
def test_module_rejects_a_bad_guided_radius(value) -> None:
    from neurocorr.errors import ConfigError
    from tests.models.detector.test_training import tiny_module

    with pytest.raises(ConfigError, match="model.guided_px"):
        tiny_module(guided_px=value)
    assert tiny_module(guided_px=2).evaluation.guided_px == 2.0
