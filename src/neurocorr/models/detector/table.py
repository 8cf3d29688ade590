"""The evaluation table: rows of (method, sequence, pair, metrics) -> per-sequence and average
figures per method, printed as text and written as CSV."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from neurocorr.models.detector.homography import homography_auc

METRICS = ("rep_300_3px", "rep_60_1px", "match_acc", "h_auc_1px", "h_auc_3px", "h_auc_5px", "h_floor_3px",
           "loc_err_300_3px", "n_matches", "n_kp", "det_ms")
# AUC figures: (the per-pair corner error they are taken over, the threshold in px); h_floor_3px is the AUC@3px
# of the floor (homography.floor_corner_error): what a perfect outlier rejection would reach with the matches
AUC_PX = {"h_auc_1px": ("h_err", 1.0), "h_auc_3px": ("h_err", 3.0), "h_auc_5px": ("h_err", 5.0),
          "h_floor_3px": ("h_err_floor", 3.0)}


def figure_of(rows: Sequence[dict], metric: str) -> float:
    """One figure over ``rows`` (one method's per-pair rows): for a metric of ``AUC_PX`` the homography AUC of
    their corner errors (``h_err``, or ``h_err_floor``), else the mean of ``metric`` without NaNs (NaN when none
    has it)."""
    if metric in AUC_PX:
        key, px = AUC_PX[metric]
        errors = [float(r[key]) for r in rows if key in r]
        return homography_auc(errors, px) if errors else math.nan
    values = [float(r[metric]) for r in rows if metric in r and not math.isnan(float(r[metric]))]
    return sum(values) / len(values) if values else math.nan


def summarise(rows: Sequence[dict], metrics: Sequence[str] = METRICS) -> list[dict]:
    """Mean of each metric per (method, sequence), then per method over all pairs (``sequence``
    ``average``). NaNs (e.g. no repeated point) are left out of the means. ``h_auc_<t>px`` is the
    homography AUC of the group's corner errors (``h_err``) up to t px, ``h_floor_3px`` that of their floors."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["method"], row["sequence"])].append(row)
        groups[(row["method"], "average")].append(row)
    out = []
    for (method, sequence), members in groups.items():
        entry = {"method": method, "sequence": sequence, "pairs": len(members)}
        entry.update({m: figure_of(members, m) for m in metrics})
        out.append(entry)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out.sort(key=lambda e: (e["sequence"] == "average", e["sequence"], methods.index(e["method"])))
    return out


def format_table(summary: Sequence[dict], metrics: Sequence[str] = METRICS) -> str:
    """A fixed-width text table of :func:`summarise`'s output."""
    header = ["sequence", "method", "pairs", *metrics]
    lines = [header] + [[e["sequence"], e["method"], str(e["pairs"])] + [f"{e[m]:.3f}" for m in metrics] for e in summary]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines]
    text.insert(1, "-" * len(text[0]))
    return "\n".join(text)


def write_csv(summary: Sequence[dict], path: Path, metrics: Sequence[str] = METRICS,
              keys: Sequence[str] = ("sequence", "method", "pairs")) -> Path:
    """Write rows (``keys`` then ``metrics`` columns) as CSV through a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*keys, *metrics], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(summary)
    tmp.replace(path)
    return path
