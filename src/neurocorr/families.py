"""The registry of model families: one line per family.

Everything that must know every family (the checkpoint safety check, ``evaluate.py`` rebuilding a
model from a checkpoint, the bench, the tests, the DVC stages) reads this table, so adding a family
is one line here plus the family's own folder and configs (see ``docs/adding_a_family.md``).
"""

from __future__ import annotations

#: family name (the ``conf/model/<name>.yaml`` option) -> its LightningModule class, by import path
FAMILIES: dict[str, str] = {
    "agfusion": "neurocorr.models.agfusion.lightning_model.AGFusionModule",
    "detector": "neurocorr.models.detector.lightning_model.DetectorModule",
    "dino": "neurocorr.models.dino.lightning_model.DINOModule",
    "heatmapper": "neurocorr.models.heatmapper.lightning_model.HeatmapperModule",
    "qatm": "neurocorr.models.qatm.lightning_model.QATMModule",
}


def register_family(name: str, target: str) -> None:
    """Add a family at run time (plugins and tests); the same as one more line in ``FAMILIES``."""
    FAMILIES[name] = target


def family_of(target: object) -> str | None:
    """The family whose LightningModule is ``target`` (an import path), or ``None``."""
    for name, known in FAMILIES.items():
        if target == known:
            return name
    return None
