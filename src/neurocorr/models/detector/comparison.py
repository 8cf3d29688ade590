"""Is the model above a baseline on these pairs, or within what the choice of pairs moves it by?

For each method other than the reference (the model) and each figure: the reference's figure minus the
method's over the pairs both were scored on, and a paired bootstrap interval of that difference: the
pairs are drawn with replacement, the same draw for both methods, so what a pair does to both (an easy
or a hard sequence) cancels and what is left is how differently the two methods do pair by pair. An
interval that holds 0 says the pairs do not tell the two apart (over the 15 dev pairs, the homography
AUC@3px of the model minus Harris's with the model's descriptor is such a case; see the README).

Figures are those of the evaluation table over all pairs (``table.figure_of``): the mean of a per-pair
metric (NaNs left out) or, for ``h_auc_<t>px``, the homography AUC of the pairs' corner errors.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from neurocorr.models.detector.table import figure_of


def paired_bootstrap(rows: Sequence[dict], metrics: Sequence[str], reference: str = "model", resamples: int = 2000,
                     level: float = 0.95, seed: int = 0) -> list[dict]:
    """The reference method against every other method in ``rows`` (dicts with ``method``, ``sequence``,
    ``pair`` and the metrics, one per method and pair, as ``DetectorEvaluation`` collects them).

    Returns one dict per (method, metric), methods in their first order: ``method``, ``metric``, ``pairs``
    (how many pairs both have), ``difference`` (reference minus method), ``low`` and ``high`` (the
    ``level`` percentile interval over ``resamples`` bootstrap draws of those pairs; NaN with
    ``resamples=0``) and ``above`` (the share of draws in which the reference is strictly above)."""
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ValueError(f"bootstrap resamples must be an integer >= 0 (0 = no interval), got {resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"bootstrap interval level must be in (0, 1), got {level!r}")
    by_method: dict[str, dict[tuple[str, int], dict]] = {}
    for row in rows:
        by_method.setdefault(str(row["method"]), {})[(str(row["sequence"]), int(row["pair"]))] = row
    if reference not in by_method:
        raise ValueError(f"no rows of the reference method {reference!r}; methods: {sorted(by_method)}")
    rng = np.random.default_rng(seed)
    out = []
    for method, theirs in by_method.items():
        if method == reference:
            continue
        keys = sorted(set(by_method[reference]) & set(theirs))
        ours_rows = [by_method[reference][k] for k in keys]
        their_rows = [theirs[k] for k in keys]
        draws = rng.integers(0, len(keys), size=(resamples, len(keys))) if keys else np.zeros((0, 0), dtype=int)
        for metric in metrics:
            entry = {"method": method, "metric": metric, "pairs": len(keys), "difference": math.nan,
                     "low": math.nan, "high": math.nan, "above": math.nan}
            if keys:
                entry["difference"] = figure_of(ours_rows, metric) - figure_of(their_rows, metric)
            if keys and resamples:
                diffs = np.array([figure_of([ours_rows[i] for i in d], metric) - figure_of([their_rows[i] for i in d], metric)
                                  for d in draws])
                diffs = diffs[~np.isnan(diffs)]
                if diffs.size:
                    tail = (1 - level) / 2
                    entry["low"], entry["high"] = (float(q) for q in np.quantile(diffs, [tail, 1 - tail]))
                    entry["above"] = float((diffs > 0).mean())
            out.append(entry)
    return out


def format_comparison(entries: Sequence[dict], level: float = 0.95) -> str:
    """A text table of :func:`paired_bootstrap`'s output: one line per method, one column per metric,
    ``difference [low, high]``."""
    metrics = list(dict.fromkeys(e["metric"] for e in entries))
    methods = list(dict.fromkeys(e["method"] for e in entries))
    cell = {(e["method"], e["metric"]): e for e in entries}
    pairs = {e["method"]: e["pairs"] for e in entries}
    header = ["model minus", "pairs", *metrics]
    lines = [header]
    for m in methods:
        lines.append([m, str(pairs[m])] + [f"{cell[m, k]['difference']:+.3f} [{cell[m, k]['low']:+.3f}, {cell[m, k]['high']:+.3f}]"
                                          for k in metrics])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines]
    text.insert(1, "-" * len(text[0]))
    return f"model minus each baseline over the same pairs, {level:.0%} paired bootstrap interval\n" + "\n".join(text)
