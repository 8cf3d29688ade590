"""pretrained: false | true | <file>, the same for every backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50

from neurocorr.backbones.resnet_stem import resnet50_stem
from neurocorr.errors import WeightsError


def test_false_gives_the_stem_with_256_channels() -> None:
    stem = resnet50_stem(False)
    assert stem(torch.rand(1, 3, 64, 64)).shape == (1, 256, 16, 16)


def test_local_file_of_a_full_resnet50_is_loaded(tmp_path: Path) -> None:
    full = resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": full.state_dict()}, path)
    stem = resnet50_stem(str(path))
    assert torch.equal(stem.conv1.weight, full.conv1.weight)
    assert torch.equal(stem.layer1[2].conv3.weight, full.layer1[2].conv3.weight)


def test_missing_or_wrong_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=f"weights file {tmp_path / 'nope.pth'} does not exist"):
        resnet50_stem(str(tmp_path / "nope.pth"))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, wrong)
    with pytest.raises(WeightsError, match="do not fit"):
        resnet50_stem(str(wrong))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=f"cannot read weights file {garbage}"):
        resnet50_stem(str(garbage))


def test_true_offline_fails_in_one_line_asking_for_a_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights to fall back on
    import urllib.request

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(WeightsError) as err:
        resnet50_stem(True)
    message = str(err.value)
    assert "\n" not in message and "pass a local file" in message and "pretrained=" in message
