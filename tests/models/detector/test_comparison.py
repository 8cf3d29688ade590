"""The model against each baseline over the same pairs: differences and paired bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurocorr.errors import ConfigError
from neurocorr.models.detector.comparison import format_comparison, paired_bootstrap
from neurocorr.models.detector.homography import homography_auc
from neurocorr.models.detector.table import figure_of, summarise


def _rows(method: str, rep: list[float], h_err: list[float], sequences: tuple[str, ...] = ("a", "b")) -> list[dict]:
    return [{"method": method, "sequence": sequences[i % len(sequences)], "pair": 2 + i // len(sequences),
             "rep_300_3px": r, "h_err": e} for i, (r, e) in enumerate(zip(rep, h_err))]


def _entry(entries: list[dict], method: str, metric: str) -> dict:
    return next(e for e in entries if e["method"] == method and e["metric"] == metric)


def test_a_method_against_itself_differs_by_zero_in_every_draw() -> None:
    rng = np.random.default_rng(0)
    rep, err = list(rng.uniform(0, 1, 12)), list(rng.uniform(0, 6, 12))
    rows = _rows("model", rep, err) + _rows("twin", rep, err)
    for metric in ("rep_300_3px", "h_auc_3px"):
        e = _entry(paired_bootstrap(rows, [metric], resamples=200), "twin", metric)
        assert e["pairs"] == 12 and e["difference"] == e["low"] == e["high"] == 0.0 and e["above"] == 0.0


def test_a_uniform_lead_on_every_pair_is_the_whole_interval() -> None:
    rng = np.random.default_rng(1)
    rep = list(rng.uniform(0.2, 0.8, 10))
    rows = _rows("model", [r + 0.1 for r in rep], [1.0] * 10) + _rows("harris", rep, [1.0] * 10)
    e = _entry(paired_bootstrap(rows, ["rep_300_3px"], resamples=300), "harris", "rep_300_3px")
    assert e["difference"] == pytest.approx(0.1) and e["low"] == pytest.approx(0.1) and e["high"] == pytest.approx(0.1)
    assert e["above"] == 1.0


def test_a_lead_from_one_pair_has_an_interval_that_holds_zero() -> None:
    """Nine ties and one pair far ahead: the difference is positive, but a draw without that pair is 0."""
    rows = _rows("model", [0.5] * 9 + [1.0], [1.0] * 10) + _rows("orb", [0.5] * 10, [1.0] * 10)
    e = _entry(paired_bootstrap(rows, ["rep_300_3px"], resamples=2000, seed=3), "orb", "rep_300_3px")
    assert e["difference"] == pytest.approx(0.05)
    assert e["low"] == 0.0 < e["difference"] < e["high"]
    assert 0.5 < e["above"] < 0.8  # about 1 - 0.9^10 of the draws hold the pair


def test_differences_equal_the_tables_figures_and_auc_takes_inf() -> None:
    model = _rows("model", [0.7, 0.6, 0.9, 0.4], [0.5, math.inf, 2.0, 4.0])
    sift = _rows("sift", [0.5, 0.6, 0.8, 0.6], [1.5, 0.2, math.inf, 1.0])
    entries = paired_bootstrap(model + sift, ["rep_300_3px", "h_auc_3px", "h_auc_1px"], resamples=0)
    table = {(s["method"], s["sequence"]): s for s in summarise(model + sift)}
    for metric in ("rep_300_3px", "h_auc_3px", "h_auc_1px"):
        e = _entry(entries, "sift", metric)
        assert e["difference"] == pytest.approx(table["model", "average"][metric] - table["sift", "average"][metric])
        assert math.isnan(e["low"]) and math.isnan(e["high"])  # resamples=0: no interval
    assert figure_of(model, "h_auc_3px") == pytest.approx(homography_auc([0.5, math.inf, 2.0, 4.0], 3.0))


def test_only_pairs_both_methods_have_are_compared() -> None:
    model = _rows("model", [1.0, 1.0, 0.0], [1.0] * 3, sequences=("a",))
    akaze = _rows("akaze", [0.5, 0.5], [1.0] * 2, sequences=("a",))  # no third pair
    e = _entry(paired_bootstrap(model + akaze, ["rep_300_3px"], resamples=50), "akaze", "rep_300_3px")
    assert e["pairs"] == 2 and e["difference"] == pytest.approx(0.5)


def test_the_same_seed_gives_the_same_interval_and_another_seed_another() -> None:
    rng = np.random.default_rng(2)
    rows = _rows("model", list(rng.uniform(0, 1, 15)), [1.0] * 15) + _rows("hessian", list(rng.uniform(0, 1, 15)), [1.0] * 15)
    a, b, c = (_entry(paired_bootstrap(rows, ["rep_300_3px"], resamples=500, seed=s), "hessian", "rep_300_3px") for s in (0, 0, 1))
    assert (a["low"], a["high"]) == (b["low"], b["high"]) and (a["low"], a["high"]) != (c["low"], c["high"])


@pytest.mark.parametrize("kwargs, match", [({"resamples": -1}, "resamples"), ({"resamples": 2.5}, "resamples"),
                                           ({"level": 1.0}, "level"), ({"reference": "superpoint"}, "superpoint")])
def test_bad_settings_are_refused_by_name(kwargs: dict, match: str) -> None:
    rows = _rows("model", [0.5, 0.5], [1.0, 1.0]) + _rows("sift", [0.5, 0.5], [1.0, 1.0])
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(rows, ["rep_300_3px"], **kwargs)


def test_the_text_table_has_a_line_per_baseline_with_each_interval() -> None:
    rows = _rows("model", [0.6] * 4, [1.0] * 4) + _rows("sift", [0.5] * 4, [1.0] * 4) + _rows("orb", [0.7] * 4, [1.0] * 4)
    text = format_comparison(paired_bootstrap(rows, ["rep_300_3px"], resamples=20))
    lines = text.splitlines()
    assert "95% paired bootstrap" in lines[0]
    assert any(line.startswith("sift") and "+0.100 [+0.100, +0.100]" in line for line in lines)
    assert any(line.startswith("orb") and "-0.100 [-0.100, -0.100]" in line for line in lines)


def test_the_module_refuses_a_bad_resample_count(make_cfg, tmp_path) -> None:
    from neurocorr.checkpoints import build_model
    from tests.models.detector.tiny import TINY_DETECTOR

    cfg = make_cfg("model=detector", "logger=none", *TINY_DETECTOR, "model.compare_resamples=-5", root=tmp_path)
    with pytest.raises(ConfigError, match="model.compare_resamples"):
        build_model(cfg.model)
