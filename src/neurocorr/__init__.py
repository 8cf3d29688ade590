"""neurocorr: a Hydra + Lightning training framework for visual correspondence models."""

__version__ = "0.1.0"
