"""The QATM layer against a direct reference; batched == loop; tiled == untiled."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurocorr.backbones.vgg import vgg19_features
from neurocorr.models.qatm.qatm import QATM, qatm_score, window_mean
from neurocorr.models.qatm.tiling import encode_fused, encode_tiled
from neurocorr.models.qatm.torch_model import QATMNet


def reference_score(scene, template, alpha, eps=1e-5):
    """Direct computation for one template (C, h, w) in a scene (C, H, W)."""
    c, hs, ws = scene.shape
    _, h, w = template.shape
    sf, tf = scene.flatten(1).t(), template.flatten(1).t()
    mu, sd = sf.mean(0), sf.std(0, unbiased=False) + eps
    a = F.normalize((sf - mu) / sd, dim=1, eps=eps)
    b = F.normalize((tf - mu) / sd, dim=1, eps=eps)
    sim = alpha * a @ b.t()
    like = (torch.softmax(sim, 0) * torch.softmax(sim, 1)).sqrt().max(1).values.view(hs, ws)
    out = torch.zeros(hs, ws, dtype=scene.dtype)
    for i in range(hs):
        for j in range(ws):
            y0, x0 = i - h // 2, j - w // 2
            if y0 >= 0 and x0 >= 0 and y0 + h <= hs and x0 + w <= ws:
                out[i, j] = like[y0 : y0 + h, x0 : x0 + w].log().mean().exp()
    return out


def test_qatm_matches_direct_reference_with_mixed_template_sizes():
    g = torch.Generator().manual_seed(0)
    scene = torch.randn(6, 9, 11, generator=g, dtype=torch.float64)
    sizes = torch.tensor([[3, 4], [2, 5], [1, 1]])
    templates = torch.randn(3, 6, 3, 5, generator=g, dtype=torch.float64)
    mask = torch.zeros(3, 3, 5, dtype=torch.bool)
    for n, (h, w) in enumerate(sizes.tolist()):
        mask[n, :h, :w] = True
    # a tiny chunk forces the two-pass (chunked) path
    out = qatm_score(scene, templates, mask, sizes, alpha=4.0, chunk_elements=37)
    for n, (h, w) in enumerate(sizes.tolist()):
        ref = reference_score(scene, templates[n, :, :h, :w], 4.0)
        torch.testing.assert_close(out[n], ref, rtol=1e-9, atol=1e-12)


def test_window_mean_marks_windows_leaving_the_map():
    m = torch.arange(20.0).view(1, 4, 5)
    out = window_mean(m, torch.tensor([[3, 3]]))
    assert torch.isinf(out[0, 0]).all() and torch.isinf(out[0, :, 0]).all()
    assert out[0, 1, 1] == pytest.approx(m[0, :3, :3].mean().item())


def test_learnable_alpha_gets_a_gradient():
    layer = QATM(alpha=10.0, learn_alpha=True)
    scene, templates = torch.randn(4, 6, 6), torch.randn(2, 4, 2, 2)
    out = layer(scene, templates, torch.ones(2, 2, 2, dtype=torch.bool), torch.tensor([[2, 2], [2, 2]]))
    torch.log(out[torch.isfinite(out.log())]).sum().backward()
    assert layer.alpha.grad is not None and torch.isfinite(layer.alpha.grad)


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return QATMNet(vgg19_features(width=0.125), tile_cells=64).eval()


def test_batched_templates_equal_a_loop(tiny_net):
    g = torch.Generator().manual_seed(1)
    scene = torch.rand(1, 3, 72, 88, generator=g)
    templates = [scene[0, :, 10:34, 20:52].clone(), torch.rand(3, 28, 20, generator=g), scene[0, :, 40:64, 50:74].clone()]
    with torch.no_grad():
        batched = tiny_net.match(scene, templates, stride=2)
        looped = [tiny_net.match(scene, [t], stride=2).score[0] for t in templates]
    torch.testing.assert_close(batched.score, torch.stack(looped), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("stride", [1, 4])
def test_tiled_features_equal_untiled(tiny_net, stride):
    g = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 70, 101, generator=g)
    bb = tiny_net.backbone
    align = max(4, stride)
    with torch.no_grad():
        whole = encode_fused(bb, image, stride, align)
        tiled = encode_tiled(bb, image, stride, align, halo=bb.receptive_radius + 4, tile=40)
    assert tiled.shape == whole.shape == (1, sum(bb.out_channels), -(-70 // stride), -(-101 // stride))
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-4)


def test_tiled_scene_scores_equal_untiled(tiny_net):
    g = torch.Generator().manual_seed(3)
    scene = torch.rand(1, 3, 80, 96, generator=g)
    templates = [scene[0, :, 8:40, 16:48].clone()]
    tiled_net = QATMNet(tiny_net.backbone, tile_cells=8).eval()
    with torch.no_grad():
        a = tiled_net.match(scene, templates, stride=4)  # tiles of 32 px
        b = tiny_net.match(scene, templates, stride=4)  # one tile
    torch.testing.assert_close(a.score, b.score, atol=1e-6, rtol=1e-4)


def test_recomputed_pass_equals_cached_pass():
    from neurocorr.models.qatm.qatm import qatm_log_likelihood

    g = torch.Generator().manual_seed(4)
    scene = F.normalize(torch.randn(50, 7, generator=g), dim=1)
    templates = F.normalize(torch.randn(3, 6, 7, generator=g), dim=2)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False
    cached = qatm_log_likelihood(scene, templates, mask, 9.0, chunk_elements=40)
    recomputed = qatm_log_likelihood(scene, templates, mask, 9.0, chunk_elements=40, cache_elements=0)
    torch.testing.assert_close(cached, recomputed)
