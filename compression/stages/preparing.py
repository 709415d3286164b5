"""Stage 1, ``preparing``: load and check the model and data, tokenize every split once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from .. import onnx_export
from ..batching import Batch, Encoded, stratified_subset
from ..datasets import LabelledData, TextSplit, prepare_data, read_split
from ..device import Runtime
from ..errors import InvalidInputError
from ..evaluation import EvalSet, parameter_count, size_mb
from ..inspection import ModelInfo, inspect_model_dir
from ..latency import compare_latency
from ..models import LoadedModel, head_label_order, load_model
from ..progress import ProgressTracker
from ..report import DatasetReport, Files, LatencyComparison, ModelReport, ResolvedOptions
from ..selection import max_layers_removed, validate_target
from ..spec import CompressionSpec
from ..training import default_learning_rate

CALIBRATION_BATCH_SIZE = 32


@dataclass(frozen=True)
class Prepared:
    """The loaded model and the tokenized data every later stage works on.

    ``loaded.model`` is the teacher-to-be: fine-tuning trains it in place. ``calibration`` is the
    signals' micro-batches; ``max_removed`` how deep the sweep walks.
    """

    spec: CompressionSpec
    runtime: Runtime
    data: LabelledData
    loaded: LoadedModel
    train_set: Encoded
    validation: EvalSet
    test: EvalSet | None
    calibration: list[Batch]
    max_removed: int
    parameters: int
    needs_teacher: bool
    model_report: ModelReport
    dataset_report: DatasetReport
    options_report: ResolvedOptions

    @property
    def model(self) -> PreTrainedModel:
        return self.loaded.model

    @property
    def num_layers(self) -> int:
        return self.loaded.info.num_layers

    @property
    def seed(self) -> int:
        return self.spec.options.seed

    def compare_latency(
        self, original: nn.Module, compressed: nn.Module
    ) -> LatencyComparison | None:
        """Both models timed side by side on validation batches, unless
        ``options.measure_latency`` is off."""
        if not self.spec.options.measure_latency:
            return None
        return compare_latency(original, compressed, self.validation.encoded, self.runtime)

    def learning_rate(self, given: float | None) -> float:
        """``given``, else method.md's default for the model's size."""
        return given or default_learning_rate(self.parameters)


def prepare(spec: CompressionSpec, tracker: ProgressTracker) -> Prepared:
    """Check and load everything a run needs, before any long work starts.

    Raises:
        InvalidInputError: the model, the data or the spec cannot be used together.
    """
    options = spec.options
    torch.manual_seed(options.seed)  # a new classification head's initial weights
    runtime = Runtime.resolve(options.device, options.precision)
    info = inspect_model_dir(spec.model_dir)
    data, order = _read_data(spec, info)
    if spec.columns.text_pair_column is None and PAIR_COLUMN in data.train.columns:
        # The columns are named, never guessed; but a pair task read as single texts trains a
        # worse model without a word (MRPC: 0.74 against 0.78 with its pairs).
        tracker.warn(
            f"the train file has a {PAIR_COLUMN!r} column that this run does not use; set "
            f"text_pair_column to {PAIR_COLUMN!r} (--text-pair-column {PAIR_COLUMN}) to read "
            "it as each example's second text"
        )
    if "onnx" in spec.export.formats:
        onnx_export.check_available()
    max_removed = max_layers_removed(options.max_layers_removed, info.num_layers)
    validate_target(spec.target, info.num_layers, max_removed)
    loaded = _load(spec, info, data, order, runtime)
    encode = _encoder(spec, loaded, data, tracker)
    train_set = encode(data.train)
    calibration = stratified_subset(train_set.labels, options.n_calib, options.seed)
    parameters = parameter_count(loaded.model)
    prepared = Prepared(
        spec=spec,
        runtime=runtime,
        data=data,
        loaded=loaded,
        train_set=train_set,
        validation=EvalSet(encode(data.validation), options.eval_batch_size),
        test=EvalSet(encode(data.test), options.eval_batch_size) if data.test else None,
        calibration=train_set.sorted_batches(CALIBRATION_BATCH_SIZE, calibration),
        max_removed=max_removed,
        parameters=parameters,
        needs_teacher=options.fine_tune_teacher == "always" or not loaded.has_trained_head,
        model_report=_model_report(loaded, parameters),
        dataset_report=_dataset_report(data, len(calibration)),
        options_report=resolved_options(spec, runtime, max_removed, parameters),
    )
    tracker.event(
        "message",
        f"loaded {info.model_type} with {info.num_layers} layers and "
        f"{len(data.train)} training examples on {runtime.device.type}"
        f" ({'bf16' if runtime.bf16 else 'fp32'})",
        **runtime.describe(),
    )
    return prepared


# The second text's column in the uniform JSONL of the shared datasets and of most exports.
PAIR_COLUMN = "text_pair"


def _read_data(spec: CompressionSpec, info: ModelInfo) -> tuple[LabelledData, list[str] | None]:
    """The splits, and the head's label order when the model's head is kept."""
    columns = spec.columns.model_dump()
    train = read_split(spec.train, name="train", **columns)
    validation = (
        read_split(spec.validation, name="validation", **columns) if spec.validation else None
    )
    test = read_split(spec.test, name="test", **columns) if spec.test else None
    options = spec.options
    order = (
        None if options.fine_tune_teacher == "always" else head_label_order(info, set(train.labels))
    )
    data = prepare_data(
        train,
        validation,
        test,
        seed=options.seed,
        validation_fraction=options.validation_fraction,
        label_order=order,
    )
    return data, order


def _load(
    spec: CompressionSpec,
    info: ModelInfo,
    data: LabelledData,
    order: list[str] | None,
    runtime: Runtime,
) -> LoadedModel:
    loaded = load_model(info, data.labels, head_matches=order is not None)
    loaded.model.to(runtime.device)  # type: ignore[arg-type]
    if spec.options.fine_tune_teacher == "never" and not loaded.has_trained_head:
        raise InvalidInputError(
            f"the model has no classification head for the labels {data.labels}; set "
            "options.fine_tune_teacher to 'auto' to train one first",
            code="model_head_missing",
            param="options.fine_tune_teacher",
        )
    return loaded


def _encoder(
    spec: CompressionSpec, loaded: LoadedModel, data: LabelledData, tracker: ProgressTracker
) -> Callable[[TextSplit], Encoded]:
    """Tokenizes a split at the run's ``max_length`` (capped at the model's positions)."""
    max_length = _max_length(spec.options.max_length, loaded, tracker)

    def encode(split: TextSplit) -> Encoded:
        return Encoded(split, data.label_ids(split), loaded.tokenizer, max_length)

    return encode


def _max_length(requested: int, loaded: LoadedModel, tracker: ProgressTracker) -> int:
    """``options.max_length``, capped at the positions the model has embeddings for."""
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    if not positions:
        return requested
    limit = int(positions) - loaded.adapter.position_offset
    if requested > limit:
        tracker.event(
            "message",
            f"max_length {requested} exceeds the model's {limit} positions; using {limit}",
            max_length=limit,
        )
        return limit
    return requested


def _model_report(loaded: LoadedModel, parameters: int) -> ModelReport:
    return ModelReport(
        architecture=type(loaded.model).__name__,
        model_type=loaded.info.model_type,
        base_model=loaded.info.base_name,
        num_layers=loaded.info.num_layers,
        parameters=parameters,
        size_mb=size_mb(parameters),
    )


def _dataset_report(data: LabelledData, calibration: int) -> DatasetReport:
    return DatasetReport(
        labels=data.labels,
        train=len(data.train),
        validation=len(data.validation),
        test=len(data.test) if data.test else None,
        validation_carved_from_train=data.validation_carved,
        calibration=calibration,
    )


def resolved_options(
    spec: CompressionSpec, runtime: Runtime, max_removed: int, parameters: int
) -> ResolvedOptions:
    """The spec with defaults filled in; file paths reduced to their names (no server paths)."""
    lr = default_learning_rate(parameters)
    options = spec.options.model_copy(
        update={
            "max_layers_removed": max_removed,
            "teacher_learning_rate": spec.options.teacher_learning_rate or lr,
        }
    )
    distillation = spec.distillation.model_copy(
        update={"learning_rate": spec.distillation.learning_rate or lr}
    )
    return ResolvedOptions(
        strategy=spec.strategy,
        strategies=spec.strategies,
        target=spec.target,
        distillation=distillation,
        options=options,
        export=spec.export,
        columns=spec.columns,
        dataset_name=spec.resolved_dataset_name(),
        files=Files(
            model=spec.model_dir.name,
            train=spec.train.name,
            validation=spec.validation.name if spec.validation else None,
            test=spec.test.name if spec.test else None,
        ),
        walked_strategies=spec.walked_strategies(),
        runtime=runtime.describe(),
    )
