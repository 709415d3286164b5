"""One small adapter per supported architecture: where its layer list and the parts the signals
hook into live. Everything else about a model is architecture-independent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .errors import ModelError


@dataclass(frozen=True)
class Adapter:
    """How to reach the pieces of one architecture's encoder.

    Attributes:
        layer_list: the ``ModuleList`` of encoder layers, from the base model.
        ffn_output: the linear layer *after* the feed-forward non-linearity; its input is the
            intermediate activation the activation signals read.
        self_attention: the module whose forward returns ``(output, attention_probs)``.
        num_layers_key: the config field holding the layer count.
    """

    name: str
    layer_list_path: str
    ffn_output: Callable[[nn.Module], nn.Module]
    self_attention: Callable[[nn.Module], nn.Module]
    num_layers_key: str = "num_hidden_layers"

    def layers(self, model: nn.Module) -> nn.ModuleList:
        module: nn.Module = model.base_model  # type: ignore[assignment]
        for part in self.layer_list_path.split("."):
            module = getattr(module, part)
        assert isinstance(module, nn.ModuleList)
        return module

    def set_layers(self, model: nn.Module, layers: list[nn.Module]) -> None:
        """Make ``layers`` the model's encoder, by reference: no weights are copied."""
        parent: nn.Module = model.base_model  # type: ignore[assignment]
        *path, last = self.layer_list_path.split(".")
        for part in path:
            parent = getattr(parent, part)
        setattr(parent, last, nn.ModuleList(layers))
        setattr(model.config, self.num_layers_key, len(layers))  # type: ignore[union-attr]


_BERT_LIKE = dict(
    layer_list_path="encoder.layer",
    ffn_output=lambda layer: layer.output.dense,
    self_attention=lambda layer: layer.attention.self,
)

ADAPTERS: dict[str, Adapter] = {
    "bert": Adapter(name="bert", **_BERT_LIKE),  # type: ignore[arg-type]
    "roberta": Adapter(name="roberta", **_BERT_LIKE),  # type: ignore[arg-type]
    "xlm-roberta": Adapter(name="xlm-roberta", **_BERT_LIKE),  # type: ignore[arg-type]
    "electra": Adapter(name="electra", **_BERT_LIKE),  # type: ignore[arg-type]
    "distilbert": Adapter(
        name="distilbert",
        layer_list_path="transformer.layer",
        ffn_output=lambda layer: layer.ffn.lin2,
        self_attention=lambda layer: layer.attention,
        num_layers_key="n_layers",
    ),
}


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
