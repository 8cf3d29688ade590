"""find_peaks: NMS, threshold, top-k, border, sub-pixel refinement, padding."""

from __future__ import annotations

import pytest
import torch

from neurocorr.ops.peaks import find_peaks, nms_mask


def gaussian(h: int, w: int, x: float, y: float, sigma: float = 2.0) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))


def test_subpixel_peaks_of_gaussians_are_recovered() -> None:
    points = [(10.3, 7.6), (25.0, 20.0), (5.7, 26.2)]
    heat = sum(gaussian(32, 32, x, y) for x, y in points)[None, None]
    peaks = find_peaks(heat, top_k=5, threshold=0.5)
    found = peaks.xy[0, 0][peaks.valid[0, 0]]
    assert found.shape == (3, 2)
    for x, y in points:
        assert torch.cdist(found, torch.tensor([[x, y]], dtype=found.dtype)).min() < 0.1


def test_threshold_topk_border_and_padding() -> None:
    heat = torch.zeros(2, 1, 16, 16)
    heat[0, 0, 5, 5], heat[0, 0, 10, 12], heat[0, 0, 0, 3] = 0.9, 0.7, 1.0
    peaks = find_peaks(heat, top_k=4, threshold=0.5, border=1, subpixel=False)
    assert peaks.xy.shape == (2, 1, 4, 2)
    assert peaks.valid[0, 0].tolist() == [True, True, False, False]
    assert peaks.xy[0, 0, :2].tolist() == [[5.0, 5.0], [12.0, 10.0]]  # (x, y), border peak dropped
    assert not peaks.valid[1].any()  # an empty map gives no points, no crash
    top1 = find_peaks(heat, top_k=1, threshold=0.5)
    assert top1.score[0, 0, 0] == pytest.approx(1.0)


def test_nms_keeps_only_local_maxima() -> None:
    scores = torch.tensor([[[[0.1, 0.5, 0.2, 0.0, 0.3]]]])
    assert nms_mask(scores, 3).tolist() == [[[[False, True, False, False, True]]]]
    with pytest.raises(ValueError, match="odd"):
        nms_mask(scores, 2)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        find_peaks(torch.zeros(4, 4), top_k=1)
