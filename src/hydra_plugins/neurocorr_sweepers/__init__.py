"""Hydra plugins shipped with neurocorr (Hydra finds plugins in the ``hydra_plugins`` namespace)."""
