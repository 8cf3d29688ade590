"""The synthetic gauge generator: shapes, determinism, keypoints inside, the labelled scale, styles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neurocorr.data.formats.label_studio import read_label_studio
from neurocorr.data.synthetic.gauges import HELDOUT_SPLIT, make_dataset, render_gauges
from neurocorr.data.synthetic.gauges_dial import BEZEL, render_dials
from neurocorr.data.synthetic.gauges_style import STYLES, load_style
from neurocorr.errors import ConfigError


@pytest.fixture(autouse=True)
def one_thread():
    """Rendering is many small elementwise ops: on a loaded 2-core machine, two OpenMP threads make
    them ~50x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("style, primary", [("train", "outer"), ("heldout", "inner"), ("easy", "both"), ("train", "both")])
def test_shapes_and_every_labelled_point_inside(style: str, primary: str) -> None:
    out = render_gauges(torch.Generator().manual_seed(3), 6, 48, style, primary)
    assert out.images.shape == (6, 3, 48, 48) and out.images.dtype == torch.uint8
    assert out.points.shape[:2] == out.labels.shape and out.points.shape[-1] == 2
    valid = out.labels >= 0
    pts = out.points[valid]
    assert ((pts >= 0) & (pts <= 47)).all()
    per_image = [(out.labels[i] == 0).sum().item() for i in range(6)]
    assert min(per_image) >= 1 and (out.labels == 2).sum(1).tolist() == per_image  # one end per start
    if primary != "both":
        assert per_image == [1] * 6


def test_a_pure_function_of_the_seed() -> None:
    a = render_gauges(torch.Generator().manual_seed(5), 3, 48)
    b = render_gauges(torch.Generator().manual_seed(5), 3, 48)
    c = render_gauges(torch.Generator().manual_seed(6), 3, 48)
    assert torch.equal(a.images, b.images) and torch.equal(a.points, b.points) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    torch.manual_seed(0)  # the global RNG plays no part
    d = render_gauges(torch.Generator().manual_seed(5), 3, 48)
    assert torch.equal(a.images, d.images)


def test_primary_chooses_the_labelled_scale() -> None:
    # on the frontal dial the outer scale's ticks sit at 0.68-0.85 x the bezel radius, the inner one's at 0.32-0.47
    r, style = 64, load_style("train")
    radii = {}
    for primary in ("outer", "inner", "both"):
        dial = render_dials(torch.Generator().manual_seed(11), 10, r, style, primary)
        keep = dial.labels >= 0
        radii[primary] = ((dial.points - r / 2).norm(dim=-1) / (BEZEL * r), keep)
    d, keep = radii["outer"]
    assert ((d[keep] > 0.66) & (d[keep] < 0.87)).all()
    d, keep = radii["inner"]
    inner = d < 0.5
    has_inner = (inner & keep).any(1)
    assert has_inner.any() and not has_inner.all()  # style.inner_scale = 0.7: some dials have one scale
    assert ((d[keep] > 0.3) & (d[keep] < 0.49) | ~has_inner.unsqueeze(1).expand_as(d)[keep]).all()
    d, keep = radii["both"]
    assert ((d < 0.5) & keep).any(1).tolist() == has_inner.tolist()  # both scales where there are two
    assert ((d > 0.66) & keep).any(1).all()


def test_styles_from_yaml_and_bad_styles(tmp_path: Path) -> None:
    path = tmp_path / "style.yaml"
    path.write_text("base: heldout\ntilt: [0, 5]\nfonts: [DejaVuSans]\n")
    style = load_style(str(path))
    assert style.tilt == (0, 5) and style.fonts == ("DejaVuSans",) and style.schemes == STYLES["heldout"].schemes
    path.write_text("colour: red\n")
    with pytest.raises(ConfigError, match="unknown fields \\['colour'\\]"):
        load_style(str(path))
    path.write_text("schemes: [pink]\n")
    with pytest.raises(ConfigError, match="schemes"):
        load_style(str(path))
    with pytest.raises(ConfigError, match="not a preset"):
        load_style("nope")
    with pytest.raises(ConfigError, match="primary"):
        render_gauges(torch.Generator(), 1, 48, "train", "middle")


def test_dataset_has_a_held_out_style_split(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "g", n_train=2, n_val=1, n_test=2, size=48, primary="both")
    info = json.loads((root / "styles.json").read_text())
    assert info["primary"] == "both" and info["splits"][HELDOUT_SPLIT] == "heldout" and info["splits"]["test"] == "train"
    assert info["styles"]["heldout"]["fonts"] != info["styles"]["train"]["fonts"]
    assert len(read_label_studio(root / HELDOUT_SPLIT / "export.json")) == 2
