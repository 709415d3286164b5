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


@dataclass(frozen=True)
class ConfigKeys:
    """Where one architecture keeps its sizes: the ``config.json`` keys and the tensors whose
    shapes must agree with them (names are suffixes; a checkpoint may prefix them, ``bert.``).

    Attributes:
        num_layers: the config key of the encoder's layer count.
        layer_prefix: tensor names of layer ``i`` contain ``<layer_prefix>.<i>.``.
        shapes: ``tensor suffix -> config keys of its dimensions``; layer tensors are layer 0's.
        heads: the config keys of the attention head count and of the width it divides.
    """

    num_layers: str
    layer_prefix: str
    shapes: dict[str, tuple[str, ...]]
    heads: tuple[str, str] = ("num_attention_heads", "hidden_size")


def _bert_like(embedding: str = "hidden_size") -> ConfigKeys:
    return ConfigKeys(
        num_layers="num_hidden_layers",
        layer_prefix="encoder.layer",
        shapes={
            "embeddings.word_embeddings.weight": ("vocab_size", embedding),
            "embeddings.position_embeddings.weight": ("max_position_embeddings", embedding),
            "encoder.layer.0.attention.self.query.weight": ("hidden_size", "hidden_size"),
            "encoder.layer.0.intermediate.dense.weight": ("intermediate_size", "hidden_size"),
        },
    )


# The config ``model_type`` values with an adapter in :mod:`layerfuse.compression.architectures`.
CONFIG_KEYS: dict[str, ConfigKeys] = {
    "bert": _bert_like(),
    "distilbert": ConfigKeys(
        num_layers="n_layers",
        layer_prefix="transformer.layer",
        shapes={
            "embeddings.word_embeddings.weight": ("vocab_size", "dim"),
            "embeddings.position_embeddings.weight": ("max_position_embeddings", "dim"),
            "transformer.layer.0.attention.q_lin.weight": ("dim", "dim"),
            "transformer.layer.0.ffn.lin1.weight": ("hidden_dim", "dim"),
        },
        heads=("n_heads", "dim"),
    ),
    "electra": _bert_like(embedding="embedding_size"),
    "roberta": _bert_like(),
    "xlm-roberta": _bert_like(),
}
MODEL_TYPES: tuple[str, ...] = tuple(CONFIG_KEYS)

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
