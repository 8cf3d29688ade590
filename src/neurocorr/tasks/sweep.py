"""A sweep's summary: one row per trial (overrides, status, objective), failures named at the end."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from neurocorr.files import write_text


def read_trials(sweep_dir: Path) -> list[dict[str, Any]]:
    """The trials recorded in ``trials.jsonl`` (the last record of each trial number wins)."""
    path = sweep_dir / "trials.jsonl"
    if not path.is_file():
        return []
    trials: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            trials[int(entry["trial"])] = entry
    return [trials[k] for k in sorted(trials)]


def summary_csv(trials: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial", "overrides", "status", "objective", "error"])
    for t in trials:
        writer.writerow([t["trial"], " ".join(t["overrides"]), t["status"], t["objective"], t["error"]])
    return out.getvalue()


class SweepSummary(Callback):
    """Hydra callback: writes ``sweep_summary.csv`` in the sweep folder, prints it, and ends the
    process with status 1 when any trial failed (the others have all run)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        trials = read_trials(sweep_dir)
        if not trials:
            return
        table = summary_csv(trials)
        path = write_text(sweep_dir / "sweep_summary.csv", table)
        print(f"[neurocorr] sweep summary ({path}):\n{table}", flush=True)
        failed = [t for t in trials if t["status"] != "finished"]
        if failed:
            names = ", ".join(f"{t['trial']} ({' '.join(t['overrides'])})" for t in failed)
            print(f"neurocorr: error: {len(failed)} of {len(trials)} trials failed: {names}", file=sys.stderr, flush=True)
            sys.exit(1)
