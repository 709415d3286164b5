"""Loading a Hugging Face sequence-classification model safely, and saving a pruned one.

Safety rules (architecture.md): weights load from safetensors only, ``trust_remote_code`` is
never set, and only models that :func:`~layerfuse.compression.inspection.inspect_model_dir`
accepted (the architectures of :mod:`layerfuse.compression.architectures`, a config that agrees
with its weights) are loaded.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from .architectures import Adapter, adapter_for
from .errors import ModelError
from .inspection import ModelInfo

# Weights a checkpoint without a classification head legitimately lacks; anything else missing
# means the checkpoint does not match its config and would be silently random-initialised.
HEAD_KEYS = re.compile(r"(^|\.)(classifier|pooler|pre_classifier)\.")
GENERIC_LABEL = re.compile(r"^LABEL_(\d+)$")


def head_label_order(info: ModelInfo, train_labels: set[str]) -> list[str] | None:
    """The head's label order when it classifies exactly the dataset's labels, else None.

    Generic names (``LABEL_0``...) match integer dataset labels ``0..n-1`` by position.
    """
    if not info.head_labels:
        return None
    if set(info.head_labels) == train_labels:
        return info.head_labels
    generic = [GENERIC_LABEL.match(label) for label in info.head_labels]
    if all(generic) and {str(i) for i in range(len(info.head_labels))} == train_labels:
        return [str(i) for i in range(len(info.head_labels))]
    return None


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: object
    adapter: Adapter
    info: ModelInfo
    has_trained_head: bool


def load_model(info: ModelInfo, labels: list[str], *, head_matches: bool) -> LoadedModel:
    """Load model and tokenizer for ``labels`` (eager attention: the signals read its maps)."""
    path = info.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as exc:  # tokenizers raise many types; all mean "unusable tokenizer files"
        raise ModelError(
            f"the tokenizer of {path.name!r} cannot be loaded: {exc}",
            code="model_tokenizer_invalid",
            param="model",
        ) from exc
    id2label = dict(enumerate(labels))
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        if not head_matches:
            config.num_labels = len(labels)
        config.id2label = id2label
        config.label2id = {v: k for k, v in id2label.items()}
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            path,
            config=config,
            attn_implementation="eager",
            # Half-precision checkpoints are trained and measured in fp32; autocast does the rest.
            dtype=torch.float32,
            use_safetensors=True,
            trust_remote_code=False,
            # Mismatched shapes are judged below (a fresh head is fine, a fresh layer is not).
            ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
    # What the model classes raise on a config they cannot build (an unknown hidden_act is a
    # KeyError, an out-of-range padding id an AssertionError): the user's file, not a bug here.
    except (KeyError, ValueError, TypeError, AssertionError, AttributeError) as exc:
        raise ModelError(
            f"{path.name!r} cannot be built from its config.json: "
            f"{type(exc).__name__}: {str(exc)[:300]}",
            code="model_config_invalid",
            param="model",
        ) from exc
    missing = sorted(loading.get("missing_keys", []))
    # (name, checkpoint shape, model shape) entries.
    mismatched = sorted(str(entry[0]) for entry in loading.get("mismatched_keys", []))
    body = [k for k in missing + mismatched if not HEAD_KEYS.search(k)]
    if body or (head_matches and mismatched):
        bad = body or mismatched
        raise ModelError(
            f"weights for {len(bad)} parameters (e.g. {bad[0]}) are missing from {path.name!r} "
            "or have other shapes: the checkpoint does not match its config.json",
            code="model_weights_mismatch",
            param="model",
        )
    _check_loaded(model, tokenizer, path)
    has_head = head_matches and not any("classifier" in k for k in missing)
    return LoadedModel(model, tokenizer, adapter_for(info.model_type), info, has_head)


def _check_loaded(model: PreTrainedModel, tokenizer, path: Path) -> None:
    """What only the loaded tensors and tokenizer show: every weight finite (a NaN fails the
    signals' regressions far downstream), and an embedding row for every token id."""
    for name, parameter in model.named_parameters():
        if not torch.isfinite(parameter).all():
            raise ModelError(
                f"{path.name!r} holds NaN or infinite weights in {name}",
                code="model_weights_invalid",
                param="model",
            )
    embedding = model.get_input_embeddings()
    assert isinstance(embedding, torch.nn.Embedding)  # every adapted architecture's is
    rows = embedding.num_embeddings
    if len(tokenizer) > rows:
        raise ModelError(
            f"the tokenizer of {path.name!r} has {len(tokenizer)} token ids but the model's "
            f"embedding has {rows} rows: they are not from the same checkpoint",
            code="model_tokenizer_invalid",
            param="model",
        )


def pruned_copy(model: PreTrainedModel, adapter: Adapter, kept: list[int]) -> PreTrainedModel:
    """A standalone copy of ``model`` keeping only original layers ``kept`` (sorted)."""
    clone = copy.deepcopy(model)
    # The kept layers are the clone's own, so they share its config: a layer copied on its own
    # would carry a private config that ``set_attn_implementation`` on the clone never reaches.
    layers = list(adapter.layers(clone))
    adapter.set_layers(clone, [layers[i] for i in kept])
    for new_index, layer in enumerate(adapter.layers(clone)):
        # Layer indices address KV caches; keep them consistent with the new positions.
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                setattr(module, "layer_idx", new_index)  # noqa: B010
    return clone


def save_model(model: PreTrainedModel, tokenizer, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


@torch.no_grad()
def reload_max_abs_diff(
    out: Path, model: PreTrainedModel, inputs: dict[str, torch.Tensor]
) -> float:
    """Reload ``out`` as a user would and return the largest logit difference to ``model``."""
    reloaded, loading = AutoModelForSequenceClassification.from_pretrained(
        out, use_safetensors=True, output_loading_info=True
    )
    if loading.get("missing_keys"):
        raise ModelError(
            f"the saved model lacks weights {loading['missing_keys'][:3]}", code="export_failed"
        )
    reloaded.eval()
    model.eval()
    device = next(model.parameters()).device
    cpu_inputs = {k: v.cpu() for k, v in inputs.items()}
    expected = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()
    got = reloaded(**cpu_inputs).logits.float()
    return float((expected - got).abs().max())
