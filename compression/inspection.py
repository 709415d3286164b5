"""Inspecting a Hugging Face model directory without torch: the one rule set for what is loadable.

The library checks a model directory with it before loading anything, and the service checks an
upload with it before keeping one, so both accept and refuse the same models with the same codes.
Only ``config.json``, the weight index and the safetensors headers are read.

Rules (architecture.md, safety): weights are safetensors only (pickle formats are never loaded),
``trust_remote_code`` is never needed (no ``auto_map``), the architecture has an adapter, the model
has at least :data:`MIN_LAYERS` layers, every number in the config is finite and bounded, and the
config agrees with the weights: the layer count with the layers present, and each size with the
tensor shapes (:data:`~layerfuse.compression.catalogue.CONFIG_KEYS`). A config that disagrees
would be built at its own sizes and filled with random weights, or take the machine's memory.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalogue import CONFIG_KEYS, MODEL_TYPES, ConfigKeys
from .errors import ModelError
from .jsontext import JsonTooDeep, depth, parse_json

# The files of a Hugging Face model directory an upload may carry (api.md, Models and datasets).
MODEL_FILES = frozenset(
    {
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
        "merges.txt",
        "vocab.json",
        "sentencepiece.bpe.model",
        "spm.model",
    }
)
SHARD_PATTERN = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
# Formats that unpickle (run code) when loaded: refused by name, never opened.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spm.model",
)

# Layer removal needs a layer to remove and one to keep.
MIN_LAYERS = 2
MAX_HEADER_BYTES = 100 * 1024 * 1024
# Bounds of the sizes a config may carry: above them no encoder classifier exists, and building
# the model would take more memory than any worker has.
SIZE_BOUNDS: dict[str, tuple[int, int]] = {
    "num_layers": (MIN_LAYERS, 256),
    "vocab_size": (1, 4_000_000),
    "hidden_size": (1, 65_536),
    "dim": (1, 65_536),
    "embedding_size": (1, 65_536),
    "intermediate_size": (1, 1_048_576),
    "hidden_dim": (1, 1_048_576),
    "max_position_embeddings": (1, 1_048_576),
    "num_attention_heads": (1, 1_024),
    "n_heads": (1, 1_024),
    "type_vocab_size": (0, 1_024),
    "num_labels": (1, 100_000),
}
# Any other number anywhere in config.json (dropout rates, token ids, epsilons...).
MAX_ABS_NUMBER = 1e12
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
}


@dataclass(frozen=True)
class ModelInfo:
    """What a model directory holds, read without loading weights."""

    path: Path
    model_type: str
    architecture: str
    num_layers: int
    head_labels: list[str] | None  # the classification head's labels, in id order
    base_name: str
    parameters: int
    weight_bytes: int

    @property
    def num_labels(self) -> int | None:
        return len(self.head_labels) if self.head_labels is not None else None


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]


def inspect_model_dir(
    path: Path,
    files: Iterable[str] | None = None,
    *,
    param: str = "model",
    name: str | None = None,
) -> ModelInfo:
    """Check that ``path`` holds a model the library can load safely and faithfully.

    Args:
        path: the model directory.
        files: the file names to consider (an upload's); default: every file in ``path``.
        param: the input field errors name (``model`` for the library, ``files`` for uploads).
        name: how messages call the model (default: its folder's name, quoted); an upload's
            folder is a temporary one the user never named.

    Raises:
        ModelError: ``model_not_found``, ``model_config_missing`` / ``_invalid``,
            ``model_architecture_unsupported``, ``model_too_shallow``, ``model_pickle_refused``,
            ``model_weights_missing`` / ``_invalid`` / ``_mismatch``, ``model_tokenizer_missing``.
    """
    if not path.is_dir():
        raise ModelError(
            f"model directory {path.name!r} does not exist", code="model_not_found", param=param
        )
    what = name or repr(path.name)
    names = set(files) if files is not None else {p.name for p in path.iterdir() if p.is_file()}
    if "config.json" not in names:
        raise ModelError(
            f"{what} has no config.json; save the model with save_pretrained",
            code="model_config_missing",
            param=param,
        )
    config = _read_json(path / "config.json", "config.json", param)
    model_type = _model_type(config, param)
    keys = CONFIG_KEYS[model_type]
    _check_numbers(config, param)
    num_layers = _layer_count(config, keys, param)
    head_labels = _head_labels(config, param)
    _check_sizes(config, keys, param)
    weight_files = _weight_files(path, names, what, param)
    tensors, parameters, weight_bytes = _read_headers(path, weight_files, param)
    _check_agreement(config, keys, num_layers, tensors, param)
    if not any(file in names for file in TOKENIZER_FILES):
        raise ModelError(
            f"{what} has no tokenizer; include one of {', '.join(TOKENIZER_FILES)}",
            code="model_tokenizer_missing",
            param=param,
        )
    architectures = config.get("architectures")
    first = architectures[0] if isinstance(architectures, list) and architectures else None
    return ModelInfo(
        path=path,
        model_type=model_type,
        architecture=str(first)[:128] if first else model_type,
        num_layers=num_layers,
        head_labels=head_labels,
        base_name=str(config.get("_name_or_path") or path.name),
        parameters=parameters,
        weight_bytes=weight_bytes,
    )


def _model_type(config: dict[str, Any], param: str) -> str:
    """The config's ``model_type``, when the library supports it and it needs no custom code."""
    model_type = config.get("model_type")
    if config.get("auto_map"):
        raise ModelError(
            "the model needs custom code (config.json has auto_map); layerfuse never runs "
            "remote code",
            code="model_architecture_unsupported",
            param=param,
        )
    if not isinstance(model_type, str) or model_type not in CONFIG_KEYS:
        raise ModelError(
            f"architecture {str(model_type)[:80]!r} is not supported; supported model_type "
            f"values: {', '.join(MODEL_TYPES)} (MiniLM checkpoints are 'bert')",
            code="model_architecture_unsupported",
            param=param,
        )
    return model_type


def _read_json(path: Path, label: str, param: str) -> dict[str, Any]:
    try:
        value = parse_json(path.read_bytes())
    except JsonTooDeep as exc:
        raise ModelError(f"{label} is {exc}", code="model_config_invalid", param=param) from None
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"{label} is not valid JSON: {str(exc)[:200]}", code="model_config_invalid", param=param
        ) from None
    if not isinstance(value, dict):
        raise ModelError(
            f"{label} must hold a JSON object", code="model_config_invalid", param=param
        )
    return value


def _check_numbers(config: dict[str, Any], param: str) -> None:
    """Every number is finite and of a sane size; the sizes are integers within their bounds."""
    stack: list[Any] = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif _is_number(item) and (not math.isfinite(item) or abs(item) > MAX_ABS_NUMBER):
            raise ModelError(
                f"config.json holds the number {item!r}, outside ±{MAX_ABS_NUMBER:.0e}",
                code="model_config_invalid",
                param=param,
            )
    for key, (low, high) in SIZE_BOUNDS.items():
        if key in config and key != "num_layers":
            _bounded_int(config, key, low, high, param)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bounded_int(config: dict[str, Any], key: str, low: int, high: int, param: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ModelError(
            f"config.json has {key}={json.dumps(value)[:40]}; it must be an integer from {low} to "
            f"{high}",
            code="model_config_invalid",
            param=param,
        )
    return value


def _check_sizes(config: dict[str, Any], keys: ConfigKeys, param: str) -> None:
    """Sizes the model class asserts on when it is built (after the upload was accepted, so the
    job failed with an internal error): heads that divide the width, a padding id in the vocab."""
    heads, width = config.get(keys.heads[0]), config.get(keys.heads[1])
    if isinstance(heads, int) and isinstance(width, int) and heads > 0 and width % heads:
        raise ModelError(
            f"config.json has {keys.heads[1]}={width}, which {keys.heads[0]}={heads} does not "
            "divide: each attention head takes an equal share of the width",
            code="model_config_invalid",
            param=param,
        )
    pad, vocab = config.get("pad_token_id"), config.get("vocab_size")
    if isinstance(pad, int) and isinstance(vocab, int) and not -vocab <= pad < vocab:
        raise ModelError(
            f"config.json has pad_token_id={pad}, outside the vocabulary (vocab_size={vocab})",
            code="model_config_invalid",
            param=param,
        )


def _layer_count(config: dict[str, Any], keys: ConfigKeys, param: str) -> int:
    value = config.get(keys.num_layers)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MIN_LAYERS:
        raise ModelError(
            f"config.json has {keys.num_layers}={value}; layer removal needs a model with at "
            f"least {MIN_LAYERS} layers",
            code="model_too_shallow",
            param=param,
        )
    low, high = SIZE_BOUNDS["num_layers"]
    return _bounded_int(config, keys.num_layers, low, high, param)


def _head_labels(config: dict[str, Any], param: str) -> list[str] | None:
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not any(
        str(a).endswith("ForSequenceClassification") for a in architectures
    ):
        return None
    id2label = config.get("id2label")
    if id2label is None:
        return None
    keys = list(id2label) if isinstance(id2label, dict) else []
    if not keys or not all(k.isdigit() and len(k) < 7 for k in keys):
        raise ModelError(
            "config.json's id2label must map label ids (0, 1, ...) to names",
            code="model_config_invalid",
            param=param,
        )
    low, high = SIZE_BOUNDS["num_labels"]
    if not low <= len(keys) <= high:
        raise ModelError(
            f"config.json's id2label has {len(keys)} labels; at most {high} are supported",
            code="model_config_invalid",
            param=param,
        )
    return [str(id2label[k]) for k in sorted(keys, key=int)]


def _weight_files(path: Path, names: set[str], what: str, param: str) -> list[str]:
    if "model.safetensors" in names:
        return ["model.safetensors"]
    shards = sorted(name for name in names if SHARD_PATTERN.match(name))
    if shards:
        if "model.safetensors.index.json" not in names:
            raise ModelError(
                "sharded weights need model.safetensors.index.json",
                code="model_weights_missing",
                param=param,
            )
        index = _read_json(
            path / "model.safetensors.index.json", "model.safetensors.index.json", param
        )
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not all(
            isinstance(v, str) for v in weight_map.values()
        ):
            raise ModelError(
                "model.safetensors.index.json needs a weight_map from tensor names to shard "
                "file names (strings)",
                code="model_config_invalid",
                param=param,
            )
        needed = set(weight_map.values())
        missing = sorted(str(n)[:80] for n in needed - set(shards))
        if not needed or missing:
            raise ModelError(
                f"the weight index names shards that are not there: {missing or 'none'}",
                code="model_weights_missing",
                param=param,
            )
        return sorted(str(n) for n in needed)
    pickles = sorted(name for name in names if name.lower().endswith(PICKLE_SUFFIXES))
    if pickles:
        raise ModelError(
            f"{what} has no .safetensors weights (found pickle files {pickles[:5]}, which "
            "are never loaded); re-save the model with save_pretrained(..., "
            "safe_serialization=True)",
            code="model_pickle_refused",
            param=param,
        )
    raise ModelError(
        f"{what} has no weights; include model.safetensors (pickle formats are refused)",
        code="model_weights_missing",
        param=param,
    )


def _read_headers(path: Path, files: list[str], param: str) -> tuple[list[Tensor], int, int]:
    """Every tensor of the weight files, their parameter count and their data bytes."""
    tensors: list[Tensor] = []
    for name in files:
        tensors.extend(read_safetensors_header(path / name, param=param))
    parameters = sum(math.prod(t.shape) for t in tensors)
    weight_bytes = sum((path / name).stat().st_size for name in files)
    return tensors, parameters, weight_bytes


def read_safetensors_header(file: Path, *, param: str = "model") -> list[Tensor]:
    """The tensors a safetensors file declares, after checking its header against its size.

    Raises:
        ModelError: ``model_weights_invalid``: not safetensors, truncated, or a malformed entry
            (unknown dtype, a shape that is not a list of non-negative integers, data offsets
            outside the file or not matching the shape).
    """

    def invalid(why: str) -> ModelError:
        return ModelError(
            f"{file.name} is not a valid safetensors file: {why}",
            code="model_weights_invalid",
            param=param,
        )

    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise invalid("it is shorter than its 8-byte header length")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise invalid("the header length is larger than the file")
        try:
            header = parse_json(f.read(length))
        except ValueError as exc:
            raise invalid(f"the header is not valid JSON ({str(exc)[:100]})") from None
    if not isinstance(header, dict):
        raise invalid("the header is not a JSON object")
    data_size = size - 8 - length
    tensors = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or depth(entry, 1) > 1:
                raise invalid("__metadata__ must map strings to strings")
            continue
        tensor = _tensor(name, entry, data_size)
        if tensor is None:
            raise invalid(f"tensor {name[:80]!r} has a malformed or out-of-bounds entry")
        tensors.append(tensor)
    return tensors


def _tensor(name: str, entry: Any, data_size: int) -> Tensor | None:
    if not isinstance(entry, dict):
        return None
    shape, offsets, dtype = entry.get("shape"), entry.get("data_offsets"), entry.get("dtype")
    if not isinstance(shape, list) or not all(_natural(d) for d in shape) or len(shape) > 8:
        return None
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_natural(o) for o in offsets):
        return None
    width = DTYPE_BYTES.get(dtype) if isinstance(dtype, str) else None
    begin, end = offsets
    if width is None or not begin <= end <= data_size or end - begin != math.prod(shape) * width:
        return None
    return Tensor(name, tuple(shape))


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_agreement(
    config: dict[str, Any], keys: ConfigKeys, num_layers: int, tensors: list[Tensor], param: str
) -> None:
    """The config's layer count and sizes are those of the weights."""
    pattern = re.compile(rf"(?:^|\.){re.escape(keys.layer_prefix)}\.(\d+)\.")
    # (layer, name within the layer, tensor) of every layer tensor.
    in_layers = [
        (m.group(1), t.name[m.end() :], t) for t in tensors if (m := pattern.search(t.name))
    ]
    present = {int(layer) for layer, _, _ in in_layers}
    if present != set(range(num_layers)):
        found = f"layers {min(present)}-{max(present)} ({len(present)})" if present else "none"
        raise ModelError(
            f"config.json says {keys.num_layers}={num_layers} but the weights hold {found}: "
            "the checkpoint does not match its config.json",
            code="model_weights_mismatch",
            param=param,
        )
    first = {suffix: t for layer, suffix, t in in_layers if layer == "0"}
    for _, suffix, t in in_layers:
        like = first.get(suffix)
        # from_pretrained would refuse it, or re-initialise it where sizes may differ.
        if like is not None and t.shape != like.shape:
            raise ModelError(
                f"{t.name} has shape {list(t.shape)} but {like.name} has "
                f"{list(like.shape)}: every layer of the checkpoint must have the same shapes",
                code="model_weights_mismatch",
                param=param,
            )
    for suffix, dims in keys.shapes.items():
        tensor = next(
            (t for t in tensors if t.name == suffix or t.name.endswith("." + suffix)), None
        )
        if tensor is None:
            raise ModelError(
                f"the weights have no tensor {suffix!r}: the checkpoint does not match its "
                "config.json",
                code="model_weights_mismatch",
                param=param,
            )
        expected = tuple(config.get(key) for key in dims)
        if tensor.shape != expected:
            named = ", ".join(f"{k}={v}" for k, v in zip(dims, expected, strict=True))
            raise ModelError(
                f"{tensor.name} has shape {list(tensor.shape)} but config.json says {named}: the "
                "checkpoint does not match its config.json",
                code="model_weights_mismatch",
                param=param,
            )
