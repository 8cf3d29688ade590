"""DINO pieces on tiny data: EMA teacher, centring, no collapse, weights files, attention figure, contract."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
from lightly.loss import DINOLoss

from neurocorr.backbones.resnet_stem import resnet50_stem
from neurocorr.backbones.small_cnn import small_cnn
from neurocorr.backbones.vgg import vgg19_features
from neurocorr.backbones.vit import vit
from neurocorr.data.image_folder import ImageFolderDataModule
from neurocorr.errors import DataError
from neurocorr.models.dino.lightning_model import DINOModule
from neurocorr.models.dino.monitor import knn_accuracy, normalised_std
from neurocorr.models.dino.multicrop import MultiCrop
from neurocorr.models.dino.torch_model import DINONet
from tests.models.dino.tiny import tiny_image_folder


def tiny_vit() -> torch.nn.Module:
    return vit(patch_size=4, depth=1, embed_dim=24, num_heads=2, img_size=16)


def make_module(backbone: torch.nn.Module | None = None, **kw) -> DINOModule:
    net = DINONet(backbone if backbone is not None else tiny_vit(), hidden_dim=32, bottleneck_dim=16, out_dim=64)
    crops = MultiCrop(global_size=16, local_size=8, n_local=2, jitter=0.0, blur_p=0.0)
    return DINOModule(net=net, crops=crops, optimizer=torch.optim.AdamW, **kw)


def test_teacher_is_an_ema_of_the_student() -> None:
    torch.manual_seed(0)
    module = make_module()
    for p in module.net.parameters():  # the student moves away from the teacher
        p.data.add_(torch.randn_like(p))
    before_t = {k: v.clone() for k, v in module.teacher.named_parameters()}
    student = dict(module.net.named_parameters())
    module.ema_update(0.9)
    for name, p in module.teacher.named_parameters():
        torch.testing.assert_close(p, 0.9 * before_t[name] + 0.1 * student[name])
        assert not p.requires_grad
    module.ema_update(1.0)  # momentum 1 freezes the teacher
    after = dict(module.teacher.named_parameters())
    module.ema_update(1.0)
    assert all(torch.equal(after[k], v) for k, v in module.teacher.named_parameters())


def test_centring_moves_toward_the_batch_mean() -> None:
    loss = DINOLoss(8, center_momentum=0.9)
    teacher = [torch.randn(16, 8) + 3.0, torch.randn(16, 8) + 3.0]
    mean = torch.cat(teacher).mean(dim=0)
    distance = []
    for _ in range(5):
        distance.append(float((loss.center.flatten() - mean).norm()))
        loss(teacher, [t + 0.1 for t in teacher], teacher_temp=0.04)
    torch.testing.assert_close(loss.center.flatten(), mean * (1 - 0.9 ** 5), rtol=1e-5, atol=1e-5)
    assert all(b < a for a, b in zip(distance, distance[1:]))


def test_collapse_check_tells_spread_from_collapsed() -> None:
    assert float(normalised_std(torch.randn(64, 32))) > 0.8
    assert float(normalised_std(torch.randn(1, 32).repeat(64, 1))) < 1e-4


def _train_toy(center_momentum: float, steps: int = 15) -> tuple[list[float], list[float]]:
    """A few DINO steps on 32 toy images of four kinds: (teacher std, teacher entropy) per step."""
    torch.manual_seed(0)
    module = make_module(center_momentum=center_momentum)
    images = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.3
    for k in range(4):
        images[k::4, k % 3, 2 + k : 10 + k, 2 : 14 - k] = 1.0
    optimizer = torch.optim.AdamW(module.net.parameters(), lr=1e-4)
    stds, entropies = [], []
    for _ in range(steps):
        loss, stats = module._loss(module.crops(images), update_center=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module.ema_update(0.9)
        assert torch.isfinite(loss)
        stds.append(float(stats["teacher_std"]))
        entropies.append(float(stats["teacher_entropy"]))
    return stds, entropies


def test_no_collapse_on_a_toy_set_in_a_few_steps() -> None:
    stds, entropies = _train_toy(center_momentum=0.9)
    uniform = math.log(64)
    assert min(stds) > 0.08, stds  # outputs stay spread over the batch
    assert all(0.3 < e < 0.8 * uniform for e in entropies[-5:]), entropies  # neither one-hot nor uniform
    # the control: without centring the teacher collapses to one dimension, and the monitor shows it
    _, entropies_uncentred = _train_toy(center_momentum=1.0)
    assert entropies_uncentred[-1] < 0.05, entropies_uncentred


@pytest.mark.parametrize("kind", ["vit", "small_cnn", "resnet50_stem", "vgg19"])
def test_weights_file_loads_into_its_backbone(tmp_path: Path, kind: str) -> None:
    factories = {
        "vit": lambda pretrained=False: vit(patch_size=4, depth=1, embed_dim=24, num_heads=2, img_size=16, pretrained=pretrained),
        "small_cnn": lambda pretrained=False: small_cnn(widths=(8, 16), context_dilations=(2,), pretrained=pretrained),
        "resnet50_stem": lambda pretrained=False: resnet50_stem(pretrained=pretrained),
        "vgg19": lambda pretrained=False: vgg19_features(taps=(2, 7), pretrained=pretrained),
    }
    torch.manual_seed(0)
    module = make_module(factories[kind]())
    assert module.net(torch.rand(2, 3, 16, 16)).shape == (2, 64)
    for p in module.teacher.backbone.parameters():  # weights a fresh build would not have
        p.data.add_(0.5)
    path = module.save_backbone(tmp_path / "dino_backbone.pth")
    loaded = factories[kind](pretrained=str(path))
    expected = module.teacher.backbone.state_dict()
    got = loaded.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in got)


def test_attention_figure_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # run_dir without a trainer is the working folder
    module = make_module()
    images = torch.rand(3, 3, 24, 24)
    attention = module.teacher.attention(torch.rand(3, 3, 16, 16))
    assert attention.shape == (3, 2, 4, 4) and float(attention.sum(dim=(2, 3)).max()) <= 1.0 + 1e-5
    path = module.attention_figure(images)
    assert path is not None and path.is_file() and path.stat().st_size > 1000
    assert make_module(small_cnn(widths=(8,), context_dilations=())).attention_figure(images) is None


def test_module_follows_the_contract(tmp_path: Path) -> None:
    params = inspect.signature(DINOModule.__init__).parameters
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for n, p in params.items() if n != "self")
    module = make_module()
    assert isinstance(module.net, DINONet) and isinstance(module.loss_fn, DINOLoss)
    assert set(module.required_batch_keys) <= set(ImageFolderDataModule.batch_keys)
    assert module.monitor in module.validation_metrics()
    batch = {"image": torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)}
    a, b = module.on_after_batch_transfer(batch, 0), module.on_after_batch_transfer(batch, 0)
    assert len(a["views"]) == 4 and a["views"][2].shape == (4, 3, 8, 8)
    assert all(torch.equal(x, y) for x, y in zip(a["views"], b["views"]))  # seeded by (seed, step)


def test_image_folder_subset_and_knn_probe(tmp_path: Path) -> None:
    tiny_image_folder(tmp_path)
    root = tmp_path / "images"
    subset = {"split": "train", "fractions": [0.5, 0.25, 0.25], "group_pattern": r"^[^.]+\.([^.]+)\.", "seed": 1}
    dm = ImageFolderDataModule(root=str(root), image_size=16, val_fraction=0.25, subset=subset, knn_root=str(root),
                               knn_group_pattern=r"^[^.]+\.([^.]+)\.", batch_size=2)
    files = dm.datasets["train"].files + dm.datasets["val"].files
    assert len({f.name.split(".")[1] for f in files}) == 3  # the train authors only (3 of 6)
    assert dm.datasets["train"][0]["image"].shape == (3, 16, 16)
    assert dm.knn is not None and dm.knn["bank_image"].dtype == torch.uint8
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderDataModule(root=str(tmp_path / "missing"))


def test_knn_accuracy_of_separable_features() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    assert float(knn_accuracy(bank, labels, bank.flip(0), labels.flip(0), k=2)) == 1.0


def test_last_attention_is_timms_own_cls_attention() -> None:
    torch.manual_seed(0)
    backbone = tiny_vit()
    attn = backbone.vit.blocks[-1].attn
    attn.fused_attn = False  # timm's explicit path passes the attention weights through attn_drop
    seen = []
    attn.attn_drop.register_forward_hook(lambda module, inputs, output: seen.append(output))
    x = torch.randn(2, 3, 16, 16)
    backbone(x)
    expected = seen[0][:, :, 0, backbone.vit.num_prefix_tokens :].reshape(2, 2, 4, 4)
    torch.testing.assert_close(backbone.last_attention(x), expected)


def test_knn_monitor_without_a_labelled_folder_is_refused_before_training() -> None:
    from types import SimpleNamespace

    from neurocorr.errors import ConfigError
    from neurocorr.tasks.build import check_monitor

    module = make_module(monitor="val/knn_acc", monitor_mode="max")
    module.check_data(SimpleNamespace(knn={"bank_image": torch.zeros(1)}))
    check_monitor(module, "val/knn_acc")  # a labelled folder: the probe runs, the monitor is logged
    module.check_data(SimpleNamespace(knn=None))
    assert "val/knn_acc" not in module.validation_metrics()
    with pytest.raises(ConfigError, match="model.monitor=val/knn_acc is not logged"):
        check_monitor(module, "val/knn_acc")
