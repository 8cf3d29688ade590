"""Styles of synthetic gauges: the choices and ranges a batch is drawn from, as config.

A style is a :class:`GaugeStyle`; ``STYLES`` holds the named presets (``train``: what the CPU experiment
trains on, ``heldout``: other fonts, colour schemes, tilt range, backgrounds, needles and tick shapes,
never seen in training, ``easy``: the old clean frontal single-scale look). A YAML file with any of the
fields overrides a preset (``--style path.yaml``; its ``base`` key names the preset, default ``train``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurocorr.errors import ConfigError

PRIMARY = ("outer", "inner", "both")
NEEDLES = ("taper", "arrow", "bar", "lance")
TICKS = ("line", "wedge", "dot")
BACKGROUNDS = ("photo", "clutter", "plain")

# colour schemes: face, outer-scale ink, inner-scale ink, needle colours (RGB in [0, 1])
SCHEMES: dict[str, dict[str, Any]] = {
    "white_black": {"face": (0.95, 0.95, 0.93), "ink": (0.05, 0.05, 0.05), "inner": (0.8, 0.1, 0.1),
                    "needles": ((0.85, 0.05, 0.05), (0.05, 0.05, 0.05))},
    "cream_black": {"face": (0.93, 0.88, 0.75), "ink": (0.1, 0.08, 0.05), "inner": (0.1, 0.2, 0.7),
                    "needles": ((0.1, 0.08, 0.05), (0.75, 0.1, 0.05))},
    "black_white": {"face": (0.08, 0.08, 0.08), "ink": (0.95, 0.95, 0.95), "inner": (0.95, 0.7, 0.1),
                    "needles": ((0.95, 0.45, 0.05), (0.95, 0.95, 0.95))},
    "silver_black": {"face": (0.72, 0.73, 0.75), "ink": (0.05, 0.05, 0.08), "inner": (0.1, 0.45, 0.15),
                     "needles": ((0.85, 0.1, 0.1), (0.05, 0.05, 0.05))},
    # held out
    "yellow_black": {"face": (0.95, 0.82, 0.15), "ink": (0.05, 0.05, 0.05), "inner": (0.7, 0.05, 0.05),
                     "needles": ((0.05, 0.05, 0.05),)},
    "blue_white": {"face": (0.08, 0.16, 0.45), "ink": (0.95, 0.95, 0.95), "inner": (0.95, 0.85, 0.2),
                   "needles": ((0.95, 0.2, 0.1), (0.95, 0.95, 0.95))},
    "green_cream": {"face": (0.12, 0.3, 0.18), "ink": (0.95, 0.92, 0.8), "inner": (0.95, 0.6, 0.2),
                    "needles": ((0.95, 0.92, 0.8),)},
}
UNITS = ("psi", "bar", "kPa", "MPa", "kg/cm2", "inHg", "°C", "°F", "x100", "mbar")


def font_path(name: str) -> Path:
    """A font by file stem: matplotlib's bundled TrueType fonts (always installed), or a path."""
    import matplotlib

    candidates = [Path(name), Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{name}.ttf"]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"gauge style font {name!r} not found (a matplotlib font stem such as DejaVuSans, or a .ttf path)")


@dataclass(frozen=True)
class GaugeStyle:
    """What a batch of gauges is drawn from. Ranges are ``[low, high]``; lists are chosen uniformly.

    Angles in degrees; blur in pixels of a 224 px image; ``crop`` the largest shift of the dial centre
    from the image centre (share of the side; keypoints always stay inside); probabilities in [0, 1].
    """

    fonts: tuple[str, ...] = ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSerif", "cmr10", "cmss10")
    schemes: tuple[str, ...] = ("white_black", "cream_black", "black_white", "silver_black")
    backgrounds: tuple[str, ...] = ("photo", "clutter", "plain")
    photos: tuple[str, ...] = ("astronaut", "coffee", "rocket", "camera", "brick", "grass", "gravel", "page", "text")
    needles: tuple[str, ...] = ("taper", "arrow", "bar")
    ticks: tuple[str, ...] = ("line", "wedge", "dot")
    tilt: tuple[float, float] = (0.0, 28.0)
    inner_scale: float = 0.7          # probability of a second, inner scale (other units, colour, ticks)
    sweep: tuple[float, float] = (180.0, 300.0)
    dial_radius: tuple[float, float] = (0.22, 0.46)  # bezel radius, share of the image side
    crop: float = 0.14
    occlusion: float = 0.25           # probability that the needle rests on the start or end tick
    glare: tuple[float, float] = (0.0, 0.55)
    shadow: tuple[float, float] = (0.0, 0.6)
    defocus: tuple[float, float] = (0.0, 1.4)
    motion: tuple[float, float] = (0.0, 3.0)   # motion blur length, px at the output size
    jpeg: tuple[int, int] = (35, 95)  # JPEG quality range (applied with probability 0.7)
    noise: tuple[float, float] = (0.0, 0.05)
    cast: float = 0.15                # colour cast: per-channel gain in [1 - cast, 1 + cast]
    colour_jitter: float = 0.07       # scheme colours move by up to this much

    def __post_init__(self) -> None:
        for name, allowed in (("schemes", SCHEMES), ("backgrounds", BACKGROUNDS), ("needles", NEEDLES), ("ticks", TICKS)):
            values = getattr(self, name)
            bad = [v for v in values if v not in allowed]
            if not values or bad:
                raise ConfigError(f"gauge style {name}: unknown or empty {bad or values} (choose from {', '.join(allowed)})")
        if not self.fonts:
            raise ConfigError("gauge style fonts: empty")
        for font in self.fonts:
            font_path(font)
        if not 0 <= self.tilt[0] <= self.tilt[1] <= 60:
            raise ConfigError(f"gauge style tilt must be 0 <= low <= high <= 60 degrees, got {list(self.tilt)}")


STYLES: dict[str, GaugeStyle] = {
    "train": GaugeStyle(),
    "heldout": GaugeStyle(
        fonts=("DejaVuSansMono-Bold", "STIXGeneral", "STIXGeneralBolIta", "cmtt10", "DejaVuSerif-BoldItalic"),
        schemes=("yellow_black", "blue_white", "green_cream"),
        photos=("chelsea", "stereo_motorcycle", "coins", "immunohistochemistry", "clock", "moon"),
        needles=("lance", "bar"), ticks=("line", "wedge"), tilt=(20.0, 35.0), dial_radius=(0.30, 0.44),
    ),
    "easy": GaugeStyle(fonts=("DejaVuSans",), schemes=("white_black",), backgrounds=("clutter",), needles=("taper",),
                       ticks=("line",), tilt=(0.0, 8.0), inner_scale=0.0, occlusion=0.0, glare=(0.0, 0.3),
                       shadow=(0.0, 0.0), defocus=(0.0, 1.0), motion=(0.0, 0.0), jpeg=(95, 95), cast=0.05),
}


def load_style(spec: str | os.PathLike | GaugeStyle) -> GaugeStyle:
    """A preset name (``train``, ``heldout``, ``easy``), a YAML file of overrides, or a style."""
    if isinstance(spec, GaugeStyle):
        return spec
    if str(spec) in STYLES:
        return STYLES[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"gauge style {str(spec)!r}: not a preset ({', '.join(STYLES)}) nor a YAML file")
    from omegaconf import OmegaConf

    try:
        values = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as err:  # noqa: BLE001 - any parse error is the file's fault
        raise ConfigError(f"gauge style {path}: cannot be read: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"gauge style {path}: expected a mapping of style fields")
    base = load_style(str(values.pop("base", "train")))
    known = {f.name for f in dataclasses.fields(GaugeStyle)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"gauge style {path}: unknown fields {unknown} (known: {', '.join(sorted(known))})")
    return dataclasses.replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def style_dict(style: GaugeStyle) -> dict[str, Any]:
    """The style as plain JSON-able data (written beside a generated data set)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(style).items()}


__all__ = ["GaugeStyle", "STYLES", "SCHEMES", "UNITS", "PRIMARY", "load_style", "font_path", "style_dict"]
