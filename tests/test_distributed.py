"""Per-pair rows across DDP processes: two real gloo processes on the CPU (``torch.multiprocessing``),
each with its share of the pairs, must end with the table one process makes of all the pairs."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from neurocorr.distributed import gather_lists, unique_by, world_size
from neurocorr.models.detector.evaluation import DetectorEvaluation
from neurocorr.models.detector.table import summarise

WORLD = 2


def _row(method: str, sequence: str, pair: int) -> dict:
    value = (pair + 1) / 10 + (0.05 if method == "model" else 0.0)
    return {"method": method, "sequence": sequence, "pair": pair, "rep_300_3px": value, "h_err": 4.0 * value}


def _pairs_of(rank: int) -> list[tuple[str, int]]:
    """A DistributedSampler's shares of 5 pairs over 2 processes: rank 1's last is padding (pair 0 again)."""
    pairs = [("boat", 2), ("boat", 3), ("boat", 4), ("church", 2), ("church", 3)]
    padded = pairs + pairs[:1]
    return padded[rank::WORLD]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        evaluation = DetectorEvaluation(eval_settings=[(300, 3.0)], figure_pairs=1)
        evaluation.rows = [_row(m, s, p) for s, p in _pairs_of(rank) for m in ("model", "harris")]
        worst = min(evaluation.rows, key=lambda r: r["rep_300_3px"])
        evaluation.panels = [{"label": f"{worst['sequence']} {worst['pair']} rank {rank}", "value": worst["rep_300_3px"] + rank}]
        evaluation._gather()
        result = {"world": world_size(), "ranks": gather_lists([rank]), "rows": evaluation.rows,
                  "panels": [p["label"] for p in evaluation.panels]}
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_outside_a_distributed_run_the_list_is_its_own() -> None:
    items = [1, 2]
    assert world_size() == 1
    got = gather_lists(items)
    assert got == [1, 2] and got is not items


def test_unique_by_keeps_the_first_of_each_key() -> None:
    assert unique_by([("a", 1), ("b", 2), ("a", 3)], key=lambda x: x[0]) == [("a", 1), ("b", 2)]


def test_gather_lists_concatenates_in_rank_order_on_every_process(gathered: list[dict]) -> None:
    assert [g["world"] for g in gathered] == [WORLD, WORLD]
    assert all(g["ranks"] == [0, 1] for g in gathered)


def test_every_process_gets_all_pairs_once(gathered: list[dict]) -> None:
    single = [_row(m, s, p) for s, p in _pairs_of(0) + _pairs_of(1)[:-1] for m in ("model", "harris")]
    for g in gathered:
        keys = [(r["method"], r["sequence"], r["pair"]) for r in g["rows"]]
        assert len(keys) == len(set(keys)) == 10  # the padded pair is counted once
        assert summarise(g["rows"], ["rep_300_3px", "h_auc_3px"]) == summarise(single, ["rep_300_3px", "h_auc_3px"])
    assert gathered[0]["rows"] == gathered[1]["rows"]


def test_the_worst_panels_are_chosen_over_all_processes(gathered: list[dict]) -> None:
    # rank 0's worst pair is the lowest value overall; rank 1's panel (+1) must not displace it
    assert all(g["panels"] == ["boat 2 rank 0"] for g in gathered)
