"""Every registered family follows the contract written in neurocorr.models.base's docstring."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from hydra.utils import get_class
from torch import nn

from neurocorr.checkpoints import build_model
from neurocorr.families import FAMILIES
from neurocorr.models.base import NeurocorrModule
from neurocorr.tasks.build import build_datamodule, check_pairing
from tests.conftest import TINY_DATA

RANDOM_CALLS = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "normal_", "uniform_", "bernoulli"}


def _source_tree(cls: type) -> tuple[ast.Module, Path]:
    path = Path(inspect.getfile(cls))
    return ast.parse(path.read_text()), path


def _self_attr(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_module_source_follows_the_contract(family: str) -> None:
    cls = get_class(FAMILIES[family])
    assert issubclass(cls, NeurocorrModule)
    params = inspect.signature(cls.__init__).parameters
    assert any(p.kind is p.VAR_KEYWORD for p in params.values()), "base kwargs go through **base"
    assert not any(p.kind is p.VAR_POSITIONAL for p in params.values())
    tree, path = _source_tree(cls)
    classdef = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    init = next(n for n in classdef.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    made_in_init = {_self_attr(t) for n in ast.walk(init) if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target])} - {None}
    for method in (n for n in classdef.body if isinstance(n, ast.FunctionDef) and n.name != "__init__"):
        for node in ast.walk(method):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for target in targets:
                name = _self_attr(target)
                assert name is None or name in made_in_init, f"{path.name}: self.{name} first created in {method.name}"
            assert not (isinstance(node, ast.Attribute) and _self_attr(node) == "training"), \
                f"{path.name}:{node.lineno}: use self.is_fitting, not self.training"
        calls = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
                 for n in ast.walk(method) if isinstance(n, ast.Call)}
        if calls & RANDOM_CALLS:
            assert "step_rng" in calls, f"{path.name}: {method.name} draws random numbers outside self.step_rng()"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_built_module_has_net_loss_and_fits_its_default_data(make_cfg, tmp_path: Path, family: str) -> None:
    data = make_cfg(f"model={family}").hydra.runtime.choices.data
    cfg = make_cfg(f"model={family}", *TINY_DATA[data](tmp_path))
    model = build_model(cfg.model)
    assert isinstance(model.net, nn.Module) and isinstance(model.loss_fn, nn.Module)
    assert model.required_batch_keys, "declare required_batch_keys (a class attribute, or set in __init__)"
    assert model.monitor in model.validation_metrics()
    datamodule = build_datamodule(cfg.data)
    assert set(model.required_batch_keys) <= set(datamodule.batch_keys)
    check_pairing(model, datamodule, family, "default")
