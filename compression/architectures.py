"""One small adapter per supported architecture: where its layer list and the parts the signals
hook into live. Everything else about a model is architecture-independent.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .catalogue import CONFIG_KEYS, MODEL_TYPES
from .errors import ModelError


def submodule(module: nn.Module, path: str) -> nn.Module:
    """``submodule(layer, "output.dense")`` is ``layer.output.dense``."""
    for part in path.split("."):
        module = getattr(module, part)
    return module


def attention_heads(model: nn.Module) -> int:
    """Attention heads per layer (DistilBERT's config answers the name from its ``n_heads``)."""
    return int(model.config.num_attention_heads)  # type: ignore[union-attr, arg-type]


@dataclass(frozen=True)
class Adapter:
    """Where the pieces of one architecture's encoder live, as attribute paths.

    Attributes:
        ffn_output: path from a layer to the linear layer *after* the feed-forward
            non-linearity; its input is the intermediate activation the activation signals read.
        self_attention: path from a layer to the module whose forward returns
            ``(output, attention_probs)``.
        position_offset: position ids the architecture reserves (RoBERTa starts at pad + 1).
    """

    name: str
    ffn_output: str = "output.dense"
    self_attention: str = "attention.self"
    position_offset: int = 0

    @property
    def layer_list(self) -> str:
        """Path from the base model to the ``ModuleList`` of encoder layers."""
        return CONFIG_KEYS[self.name].layer_prefix

    @property
    def num_layers_key(self) -> str:
        """The config field holding the layer count (:data:`catalogue.CONFIG_KEYS`)."""
        return CONFIG_KEYS[self.name].num_layers

    def layers(self, model: nn.Module) -> nn.ModuleList:
        layers = submodule(model.base_model, self.layer_list)  # type: ignore[arg-type]
        assert isinstance(layers, nn.ModuleList)
        return layers

    def ffn_output_of(self, layer: nn.Module) -> nn.Module:
        return submodule(layer, self.ffn_output)

    def self_attention_of(self, layer: nn.Module) -> nn.Module:
        return submodule(layer, self.self_attention)

    def set_layers(self, model: nn.Module, layers: list[nn.Module]) -> None:
        """Make ``layers`` the model's encoder, by reference: no weights are copied."""
        *path, last = self.layer_list.split(".")
        parent = submodule(model.base_model, ".".join(path))  # type: ignore[arg-type]
        setattr(parent, last, nn.ModuleList(layers))
        setattr(model.config, self.num_layers_key, len(layers))


ADAPTERS: dict[str, Adapter] = {
    "bert": Adapter("bert"),
    "electra": Adapter("electra"),
    "roberta": Adapter("roberta", position_offset=2),
    "xlm-roberta": Adapter("xlm-roberta", position_offset=2),
    "distilbert": Adapter(
        "distilbert",
        ffn_output="ffn.lin2",
        self_attention="attention",
    ),
}


assert set(ADAPTERS) == set(MODEL_TYPES), "catalogue.MODEL_TYPES must name the adapters"


def adapter_for(model_type: str | None) -> Adapter:
    """The adapter of a config's ``model_type``; MiniLM checkpoints are ``bert``."""
    if model_type not in ADAPTERS:
        raise ModelError(
            f"architecture {model_type!r} is not supported; supported model_type values: "
            f"{', '.join(sorted(ADAPTERS))} (MiniLM checkpoints are 'bert')",
            code="model_architecture_unsupported",
            param="model",
        )
    return ADAPTERS[model_type]
