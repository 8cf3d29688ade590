"""A failed run removes what it created and nothing else (issue: a user's folder was deleted)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from neurocorr.tasks import run_folder
from tests.conftest import TINY_SHAPES, run_cli

QUIET = ["logger=none", "trainer=cpu", "callbacks.progress_bar=null"]


@pytest.fixture(autouse=True)
def fresh_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_folder, "_before", {})


def test_failed_run_in_a_users_folder_keeps_every_user_file(tmp_path: Path) -> None:
    user = tmp_path / "my_project"
    (user / "notes").mkdir(parents=True)
    (user / "thesis.tex").write_text("years of work")
    (user / "notes" / "a.txt").write_text("keep")
    result = run_cli("train.py", f"hydra.run.dir={user}", "data.batch_size=0", *TINY_SHAPES[:-2], *QUIET,
                     env={"NEUROCORR_ROOT": str(tmp_path)})
    assert result.returncode == 2, result.stderr[-2000:]
    assert (user / "thesis.tex").read_text() == "years of work"
    assert (user / "notes" / "a.txt").read_text() == "keep"
    assert not (user / ".hydra").exists() and not (user / "train.log").exists()  # what the run wrote is gone


def test_failed_run_in_the_working_directory_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1,2\n")
    result = run_cli("train.py", "hydra.run.dir=.", "optimizer.lr=-1", *QUIET, cwd=None,
                     env={"NEUROCORR_ROOT": str(tmp_path)}, workdir=tmp_path)
    assert result.returncode == 2
    assert (tmp_path / "data.csv").read_text() == "1,2\n"


def test_remove_created_removes_a_new_folder_whole(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "new"
    run_folder.record(folder)
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.txt").write_text("x")
    run_folder.remove_created(folder, "train")
    assert not folder.exists() and (tmp_path / "runs").is_dir()


def test_remove_created_in_a_preexisting_folder_removes_only_new_paths(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("old")
    (tmp_path / "old_dir").mkdir()
    run_folder.record(tmp_path)
    (tmp_path / "new.txt").write_text("new")
    (tmp_path / "old_dir" / "new_inside.txt").write_text("new")
    run_folder.remove_created(tmp_path, "train")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["old.txt", "old_dir"]


def test_without_a_record_only_this_process_hydra_files_go(tmp_path: Path) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("x")
    (tmp_path / "train.log").write_text("log")
    (tmp_path / "mine.txt").write_text("user")
    old = run_folder.PROCESS_START - 3600
    os.utime(tmp_path / "mine.txt", (old, old))
    run_folder.remove_created(tmp_path, "train")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
