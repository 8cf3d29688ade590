"""docs/adding_a_family.md stays true: its code blocks build a fifth family that trains and evaluates."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from neurocorr import families
from neurocorr.tasks.evaluate import evaluate
from neurocorr.tasks.train import train
from tests.conftest import REPO

GUIDE = REPO / "docs" / "adding_a_family.md"


def guide_files() -> dict[str, str]:
    """``path -> text`` of every code block of the guide that starts with ``# file: <path>``."""
    blocks = re.findall(r"```(?:python|yaml)\n# file: (\S+)\n(.*?)```", GUIDE.read_text(), flags=re.S)
    return {path: text for path, text in blocks}


@pytest.fixture
def toy_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    files = guide_files()
    assert {"toyfamily/torch_model.py", "toyfamily/lightning_model.py", "toyfamily/data.py",
            "conf/model/toy.yaml", "conf/data/toy.yaml", "conf/experiment/toy.yaml"} <= set(files)
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "toyfamily" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    line = re.search(r'FAMILIES\["toy"\] = "([\w.]+)"', GUIDE.read_text())
    assert line, "the guide names the registry line"
    monkeypatch.setitem(families.FAMILIES, "toy", line.group(1))  # the one line a new family adds
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("toyfamily")]:
        del sys.modules[name]


def test_a_fifth_family_from_the_guide_trains_and_evaluates(make_cfg, toy_family: Path, tmp_path: Path) -> None:
    search = f"hydra.searchpath=[file://{toy_family / 'conf'}]"
    cfg = make_cfg("model=toy", search, "logger=none", "trainer=cpu", "callbacks.progress_bar=null", "trainer.max_epochs=2",
                   root=tmp_path / "runs")
    value = train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert value == metrics["val/acc"] and {"train/loss", "test/acc"} <= set(metrics)
    ckpt = next((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt"))
    ev = make_cfg(f"ckpt_path={ckpt}", search, "logger=none", "trainer=cpu", config_name="evaluate", root=tmp_path / "eval")
    assert evaluate(ev) == json.loads((Path(ev.paths.output_dir) / "metrics.json").read_text())["test/acc"]
