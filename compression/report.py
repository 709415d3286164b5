"""The one definition of ``report.json`` (method.md, "report.json"), torch-free.

Every stage returns its section as one of these models; :class:`Report` collects them. The JSON
file, the job's short ``result`` (:meth:`Report.summary`), the model card, ``signals.csv``, the
plots and the service's OpenAPI schema of ``GET /v1/jobs/{id}/report`` are all derived from here,
so a key is added, renamed or documented in one place. Field order is the file's key order.

Metrics, latencies and training histories are typed dicts: the evaluation code produces plain
dicts (and the sweep checkpoints them as JSON), and the report validates them where they enter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, NotRequired, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, create_model
from typing_extensions import TypedDict

from .catalogue import BLOCK_INFLUENCE, RANDOM, SIGNAL_IDS
from .spec import Columns, Distillation, Export, ExportFormat, Options, Target

RANDOM_SEED_PREFIX = f"{RANDOM}/seed-"
# Every value the sweep measures per (state, layer): the 12 signals, then block influence.
MEASURED_IDS: tuple[str, ...] = (*SIGNAL_IDS, BLOCK_INFLUENCE)


def _is_none(value: object) -> bool:
    return value is None


def _optional() -> Any:
    """A field that is left out of the JSON when unset (the report never writes it as null)."""
    return Field(default=None, exclude_if=_is_none)


class Metrics(TypedDict):
    accuracy: float
    macro_f1: float
    loss: float


class EpochMetrics(TypedDict):
    """One row of a training history; epoch 0 is the starting weights."""

    epoch: int
    accuracy: float
    macro_f1: float
    loss: float


class Latency(TypedDict):
    """Milliseconds per batch of 1 and of 32 real examples: the mean of repeats, or, for the
    original and the compressed model, the median of their interleaved repeats."""

    batch_1: float
    batch_32: float


class RuntimeInfo(TypedDict):
    device: str
    precision: str
    # The model of the GPU or CPU the job ran on (absent in reports from before it was named).
    device_name: NotRequired[str]


class Section(BaseModel):
    """A part of the report: immutable, no unknown keys, hyphenated keys by alias."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelReport(Section):
    architecture: str
    model_type: str
    base_model: str
    num_layers: int
    parameters: int
    size_mb: float


class DatasetReport(Section):
    labels: list[str]
    train: int
    validation: int
    test: int | None
    validation_carved_from_train: bool
    calibration: int


class Files(Section):
    """The base names of the job's files (never a server path)."""

    model: str
    train: str
    validation: str | None
    test: str | None


class ResolvedOptions(Section):
    """The spec with every default filled in (learning rates, ``max_layers_removed``).

    The method's fields are :class:`~layerfuse.compression.spec.MethodSpec`'s, with its types
    (a test keeps the two in step), then what the run resolved.
    """

    strategy: str
    strategies: Literal["all"] | list[str]
    target: Target
    distillation: Distillation
    options: Options
    export: Export
    columns: Columns
    dataset_name: str
    files: Files
    walked_strategies: list[str]
    runtime: RuntimeInfo


class TeacherReport(Section):
    """``fine_tuned`` alone when the model's own head was used; the history when trained."""

    fine_tuned: bool
    resumed_from_checkpoint: bool | None = _optional()
    best_epoch: int | None = _optional()
    epochs_run: int | None = _optional()
    history: list[EpochMetrics] | None = _optional()


class Evaluation(Section):
    """A model's metrics on validation and, when the job has one, on test."""

    validation: Metrics
    test: Metrics | None


class BaselineReport(Evaluation):
    latency_ms: Latency | None


class Decision(Section):
    """One step of a fusion trajectory: which layer, and whether a measurement decided it."""

    layers_removed: int
    layer: int
    decided_by: Literal["measured", "model"]
    measured_candidates: list[int]


class LinearFit(Section):
    coefficients: dict[str, float]
    intercept: float | None = _optional()


class ForestFit(Section):
    feature_importances: dict[str, float]


def _hyphenated(name: str) -> Any:
    """A field written as ``name`` (hyphenated, like the strategy ids) and read as either."""
    return Field(
        serialization_alias=name,
        validation_alias=AliasChoices(name, name.replace("-", "_")),
    )


class FusionReport(Section):
    rows: int
    features: list[str]
    linear_regression: LinearFit = _hyphenated("linear-regression")
    random_forest: ForestFit = _hyphenated("random-forest")
    decisions: dict[str, list[Decision]] | None = _optional()


class CurvePoint(Section):
    layers_removed: int
    removed: list[int]
    validation: Metrics
    test: Metrics | None


class StrategyReport(Section):
    """A walked trajectory; ``random`` (the seeds' mean) has no order and lists its ``seeds``."""

    removal_order: list[int]
    seeds: list[str] | None = _optional()
    curve: list[CurvePoint]

    def point(self, k: int) -> CurvePoint | None:
        """The curve's point at ``k`` layers removed, if it goes that deep."""
        return next((p for p in self.curve if p.layers_removed == k), None)


class ProbePoint(Section):
    """The leave-one-out probe: the full model with ``layer`` alone removed."""

    layer: int
    validation: Metrics
    test: Metrics | None


class SignalValues(Section):
    """One measured (state, layer); the 13 measured values are fields named by their ids."""

    removed: list[int]
    layer: int

    def value(self, measure: str) -> float | None:
        """The value of signal (or ``block-influence``) ``measure``; None where not finite."""
        value = getattr(self, _attribute(measure))
        return value if value is not None and math.isfinite(value) else None


def _attribute(measure: str) -> str:
    return measure.replace("-", "_")


if TYPE_CHECKING:
    SignalRow = SignalValues
else:
    SignalRow = create_model(
        "SignalRow",
        __base__=SignalValues,
        __doc__=SignalValues.__doc__,
        **{_attribute(m): (float | None, _hyphenated(m)) for m in MEASURED_IDS},
    )


class SelectionReport(Section):
    """The exported model's layers. ``strategy`` names the candidate exported (the job's strategy,
    or a compared one that recovered better on validation); ``depth_strategy`` the strategy whose
    curve chose the depth, and ``depths_tried`` the depths recovered to choose it."""

    strategy: str
    target: Target
    layers_removed: int
    removed_layers: list[int]
    kept_layers: list[int]
    validation_accuracy: float
    met_target: bool
    depth_strategy: str | None = _optional()
    depths_tried: list[int] | None = _optional()


class DistillationReport(Section):
    """``before`` is the pruned student, ``after`` the same model after distillation."""

    enabled: bool
    before: Evaluation
    after: Evaluation
    epochs_run: int
    temperature: float
    alpha: float
    best_epoch: int | None = _optional()
    history: list[EpochMetrics] | None = _optional()


# Why a training run ended: its epoch limit, early stopping (patience ran out, also when that was
# at the last epoch), or the race of the healed comparison.
StoppedBy = Literal["max-epochs", "early-stopping", "race"]


class RecoveredCandidate(Section):
    """One recovered candidate of the healed comparison: its layers, metrics before and after
    the same recovery, and what the recovery took."""

    candidate: str
    removed_layers: list[int]
    before: Evaluation
    after: Evaluation
    epochs_run: int
    best_epoch: int
    seconds: float
    exported: bool
    # "race": stopped behind the leading candidate (``distillation.race``), so not fully recovered.
    stopped_by: StoppedBy = "max-epochs"


class DepthTrial(Section):
    """A depth the search for ``max_accuracy_drop`` recovered, and whether it met the target."""

    layers_removed: int
    strategy: str
    removed_layers: list[int]
    validation_accuracy: float
    met_target: bool


class RecoveryReport(Section):
    """Every recovery the job ran: the depth search's trials and the healed comparison at the
    selected depth (empty when distillation is off or the model is kept whole)."""

    schedule: str
    teacher_seconds: float
    depth_search: list[DepthTrial]
    candidates: list[RecoveredCandidate]
    exported: str | None = _optional()


class LatencyPair(Section):
    """One batch size, the original and the compressed model timed interleaved: medians of the
    repeats, and ``speedup`` (original ÷ compressed) as the median of the paired ratios, with
    ``spread`` their interquartile range ÷ that median."""

    original_ms: float
    compressed_ms: float
    speedup: float
    spread: float
    repeats: int


class LatencyComparison(Section):
    """Both models timed side by side at export; ``busy`` when the ratios spread too wide for the
    milliseconds to be trusted (the machine's load changed during the measurement)."""

    batch_1: LatencyPair
    batch_32: LatencyPair
    threads: int
    busy: bool
    note: str | None = _optional()


class FinalReport(Evaluation):
    num_layers: int
    parameters: int
    size_mb: float
    safetensors_bytes: int
    latency_ms: Latency | None
    latency: LatencyComparison | None = _optional()
    accuracy_to_size_ratio: float
    original_accuracy_to_size_ratio: float
    # None when the original scored 0 on the basis split: no factor over nothing.
    improvement_factor: float | None
    ratio_basis: str
    note: str


class OnnxLatency(TypedDict):
    onnxruntime_cpu: Latency
    pytorch_cpu_fp32: Latency


class OnnxReport(Section):
    file: str
    bytes: int
    opset: int
    max_abs_logit_diff: float
    tolerance: float
    checked_examples: int
    latency_ms: OnnxLatency


class FormatReport(Section):
    """One format: its file's real size, accuracy measured in that format, latency.

    ``file`` is the path in the run's output folder; ``None`` for a format measured for
    comparison only (the untrimmed variants when the vocabulary is trimmed).
    """

    file: str | None
    bytes: int
    validation_accuracy: float
    test_accuracy: float | None
    latency_ms: Latency | None
    accuracy_to_size_ratio: float
    within_tolerance: bool | None = _optional()


class VocabularyReport(Section):
    """The trimmed vocabulary: sizes, the test split's coverage and accuracy both ways."""

    before: int
    after: int
    parameters_before: int
    parameters_after: int
    test_coverage: float | None
    validation_accuracy_full: float
    validation_accuracy_trimmed: float
    test_accuracy_full: float | None
    test_accuracy_trimmed: float | None


class ExportReport(Section):
    formats: list[ExportFormat]
    reload_max_abs_logit_diff: float
    onnx: OnnxReport | None = _optional()
    vocabulary: VocabularyReport | None = _optional()


class SweepStats(Section):
    measurements: int
    cache_hits: int


T = TypeVar("T")


class Change(BaseModel, Generic[T]):
    model_config = ConfigDict(frozen=True)

    before: T
    after: T


class Summary(Section):
    """The job's short ``result`` (api.md): the selection and the headline numbers."""

    strategy: str
    removed_layers: list[int]
    kept_layers: list[int]
    met_target: bool
    baseline: Evaluation
    final: Evaluation
    parameters: Change[int]
    size_mb: Change[float]
    latency_ms: Change[Latency | None]
    accuracy_to_size_ratio: float
    improvement_factor: float | None
    artifacts: list[str]
    latency: LatencyComparison | None = _optional()
    formats: dict[str, FormatReport] | None = _optional()


class Report(Section):
    """``report.json``: what was done to the model, every measurement, and the outcome."""

    model: ModelReport
    dataset: DatasetReport
    options: ResolvedOptions
    teacher: TeacherReport
    baseline: BaselineReport
    fusion: FusionReport
    strategies: dict[str, StrategyReport]
    probe: list[ProbePoint]
    signals: list[SignalRow]
    selection: SelectionReport
    distillation: DistillationReport
    recovery: RecoveryReport
    final: FinalReport
    export: ExportReport
    formats: dict[str, FormatReport] = Field(default_factory=dict)
    timings: dict[str, float]
    sweep: SweepStats

    def to_json(self) -> dict[str, Any]:
        """The report as strict JSON values: hyphenated keys, NaN and infinities as ``None``."""
        return jsonable(self.model_dump(mode="json", by_alias=True))

    def chosen(self) -> StrategyReport | None:
        """The selected strategy's trajectory."""
        return self.strategies.get(self.selection.strategy)

    def summary(self, artifacts: list[str]) -> Summary:
        final, model = self.final, self.model
        baseline = Evaluation(validation=self.baseline.validation, test=self.baseline.test)
        return Summary(
            strategy=self.selection.strategy,
            removed_layers=self.selection.removed_layers,
            kept_layers=self.selection.kept_layers,
            met_target=self.selection.met_target,
            baseline=baseline,
            final=Evaluation(validation=final.validation, test=final.test),
            parameters=Change(before=model.parameters, after=final.parameters),
            size_mb=Change(before=model.size_mb, after=final.size_mb),
            latency_ms=Change(before=self.baseline.latency_ms, after=final.latency_ms),
            accuracy_to_size_ratio=final.accuracy_to_size_ratio,
            improvement_factor=final.improvement_factor,
            artifacts=sorted(artifacts),
            latency=final.latency,
            formats=self.formats or None,
        )


def jsonable(value: Any) -> Any:
    """``value`` with NaN/inf as ``None``, tuples as lists and numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return jsonable(value.tolist())  # numpy scalars and arrays
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
