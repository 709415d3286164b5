"""The ids of signals and strategies (method.md), importable without torch.

The signal *functions* live in :mod:`layerfuse.compression.signals`; this module only names them so
the spec (and the service, which must stay torch-free) can validate a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SignalInfo:
    id: str
    category: str
    prune_first: Literal["lowest", "highest"]


# The config ``model_type`` values with an adapter in :mod:`layerfuse.compression.architectures`.
MODEL_TYPES: tuple[str, ...] = ("bert", "distilbert", "electra", "roberta", "xlm-roberta")

SIGNALS: tuple[SignalInfo, ...] = (
    SignalInfo("activation-inhibition", "activation", "lowest"),
    SignalInfo("activation-intensity", "activation", "lowest"),
    SignalInfo("activation-energy", "activation", "lowest"),
    SignalInfo("task-relevance-mi", "mutual information", "lowest"),
    SignalInfo("redundancy-mi", "mutual information", "highest"),
    SignalInfo("gradient-fisher", "gradient", "lowest"),
    SignalInfo("gradient-norm", "gradient", "lowest"),
    SignalInfo("gradient-taylor", "gradient", "lowest"),
    SignalInfo("weight-entropy", "weight", "lowest"),
    SignalInfo("weight-magnitude", "weight", "lowest"),
    SignalInfo("attention-weight", "attention", "lowest"),
    SignalInfo("attention-entropy", "attention", "highest"),
)
SIGNAL_IDS: tuple[str, ...] = tuple(s.id for s in SIGNALS)
SIGNAL_INFO: dict[str, SignalInfo] = {s.id: s for s in SIGNALS}

RANDOM = "random"
DROP_TOP = "drop-top"
BLOCK_INFLUENCE = "block-influence"
FUSION_LINEAR = "fusion-linear-regression"
FUSION_FOREST = "fusion-random-forest"
BASELINE_IDS: tuple[str, ...] = (RANDOM, DROP_TOP, BLOCK_INFLUENCE)
FUSION_IDS: tuple[str, ...] = (FUSION_LINEAR, FUSION_FOREST)
STRATEGY_IDS: tuple[str, ...] = SIGNAL_IDS + BASELINE_IDS + FUSION_IDS
AUTO = "auto"

# Fusion learns from the rows of the trajectories walked before it; with fewer single-signal
# trajectories than this the forest sees too few distinct removals to rank layers.
MIN_SIGNAL_STRATEGIES_FOR_FUSION = 2
