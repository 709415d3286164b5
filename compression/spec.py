"""The typed specification of a compression run (method.md; api.md for the job body).

Pydantic models with the defaults of method.md and bounds on every number. They import no torch,
so the service validates job requests with the very same models the library runs on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from .catalogue import (
    AUTO,
    DROP_TOP,
    FUSION_IDS,
    MIN_SIGNAL_STRATEGIES_FOR_FUSION,
    SIGNAL_IDS,
    STRATEGY_IDS,
)

# File names that only name a split, not the data: the folder names the data instead.
SPLIT_FILE_STEMS = frozenset({"train", "training", "data"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Target(_Strict):
    """Exactly one of the four target forms of method.md ("Selecting the depth")."""

    layers_to_remove: int | None = Field(default=None, ge=1, le=256)
    keep_layers: int | None = Field(default=None, ge=1, le=256)
    max_accuracy_drop: float | None = Field(default=None, ge=0.0, le=1.0)
    select: Literal["best"] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        given = list(self.describe())
        if len(given) != 1:
            raise ValueError(
                "target takes exactly one of layers_to_remove, keep_layers, max_accuracy_drop, "
                f"select; got {given or 'none'}"
            )
        return self

    def describe(self) -> dict[str, int | float | str]:
        """The one form given, as the user wrote it: ``{"max_accuracy_drop": 0.01}``."""
        fields = ("layers_to_remove", "keep_layers", "max_accuracy_drop", "select")
        return {k: getattr(self, k) for k in fields if getattr(self, k) is not None}

    @model_serializer
    def _serialize(self) -> dict[str, int | float | str]:
        return self.describe()


def default_target() -> Target:
    return Target(max_accuracy_drop=0.01)


# Baselines the healed comparison can recover without a walked trajectory: ``drop-top`` (the top
# k layers) and ``uniform`` (kept layers spread evenly, the DistilBERT initialisation).
UNIFORM = "uniform"
COMPARE_IDS: tuple[str, ...] = (*STRATEGY_IDS, UNIFORM)


def _default_compare() -> list[str]:
    return [DROP_TOP, UNIFORM]


class Distillation(_Strict):
    """Recovery (method.md, "Recovery"): logit KD, an optional layer-mapped hidden-state term and
    attention term, early stopping, the schedule and the healed comparison.

    Defaults, from trec at half of MiniLM-L6 removed (3 epochs, validation / test accuracy):
    logit KD alone 90.2 / 91.0 in 211 CPU s; with the hidden-state term (weight 1) 89.6 / 91.8 by
    MSE and 89.6 / 92.0 by cosine, in 485 and 542 CPU s. The term did not help validation and cost
    2.3x per epoch, so it is off by default (``hidden_weight`` 0); cosine is the default distance
    for when it is turned on. ``benchmarks/hidden_term.py`` confirmed it at k = 3 on five more
    datasets: the term (weight 1, cosine) lowered validation accuracy on all five (0.6 to 3.0
    points) and test on four, at 1.3x to 1.9x the time per epoch.
    """

    enabled: bool = True
    temperature: float = Field(default=2.0, gt=0.0, le=20.0)
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    # The maximum epochs at one layer removed; each further layer removed adds
    # ``epochs_per_layer`` (2, 3, 4 epochs at k = 1, 2, 3), and early stopping usually ends a
    # recovery sooner. Three candidates at k = 2 cost up to 9 epochs, three times the former
    # single 3-epoch recovery; racing them (``race``) stops most baselines after an epoch or two
    # (benchmarks/results/racing.json).
    epochs: int = Field(default=2, ge=1, le=20)
    epochs_per_layer: int = Field(default=1, ge=0, le=10)
    patience: int = Field(default=1, ge=1, le=20)
    learning_rate: float | None = Field(default=None, gt=0.0, le=1e-2)
    batch_size: int = Field(default=32, ge=1, le=512)
    hidden_weight: float = Field(default=0.0, ge=0.0, le=100.0)
    hidden_distance: Literal["mse", "cosine"] = "cosine"
    attention_weight: float = Field(default=0.0, ge=0.0, le=100.0)
    schedule: Literal["one-shot", "iterative"] = "one-shot"
    # Epochs of recovery after each single removal of the iterative schedule (before the last).
    iterative_epochs: int = Field(default=1, ge=1, le=5)
    compare: list[str] = Field(default_factory=_default_compare, max_length=len(COMPARE_IDS))
    # Race the compared candidates: each later one stops after an epoch at which its best
    # validation accuracy trails the leader's at the same epoch, since it could then only be
    # exported by overtaking later. Off, every candidate runs its full recovery (the exact
    # best-of comparison, at up to one full recovery per candidate).
    race: bool = True

    @field_validator("compare")
    @classmethod
    def _known_candidates(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in COMPARE_IDS]
        if unknown:
            raise ValueError(f"unknown compare candidates {unknown}; known: {list(COMPARE_IDS)}")
        return list(dict.fromkeys(value))

    def max_epochs(self, layers_removed: int) -> int:
        """The epoch limit of a recovery at ``layers_removed`` layers removed."""
        return self.epochs + self.epochs_per_layer * max(layers_removed - 1, 0)


class Options(_Strict):
    max_length: int = Field(default=128, ge=8, le=512)
    n_calib: int = Field(default=512, ge=16, le=4096)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    random_seeds: int = Field(default=3, ge=1, le=10)
    leave_one_out_probe: bool = True
    # Fusion scores an already-evaluated removal by its measurement (layerfuse.compression.fusion).
    fusion_uses_measured: bool = True
    max_layers_removed: int | None = Field(default=None, ge=1, le=256)
    eval_batch_size: int = Field(default=64, ge=1, le=1024)
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    fine_tune_teacher: Literal["auto", "always", "never"] = "auto"
    teacher_epochs: int = Field(default=3, ge=1, le=20)
    teacher_learning_rate: float | None = Field(default=None, gt=0.0, le=1e-2)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    measure_latency: bool = True


ExportFormat = Literal["hf", "onnx", "onnx-int8"]


def _hf_only() -> list[ExportFormat]:
    return ["hf"]


class Export(_Strict):
    """Output formats: ``hf`` (always: the Hugging Face directory) and optionally ``onnx``.

    ``vocabulary``: ``trim`` keeps only the embedding rows of the tokens the train and validation
    splits use (plus special tokens and single characters), with a tokenizer emitting the new ids.
    """

    formats: list[ExportFormat] = Field(default_factory=_hf_only)
    vocabulary: Literal["full", "trim"] = "full"
    # The most accuracy (a fraction, on validation or test) int8 may lose against fp32 before
    # the report flags it.
    int8_tolerance: float = Field(default=0.01, ge=0, le=1)

    @field_validator("formats")
    @classmethod
    def _hf_always(cls, value: list[str]) -> list[str]:
        if "hf" not in value:
            raise ValueError(
                "formats must include 'hf': the Hugging Face directory is always written"
            )
        if "onnx-int8" in value and "onnx" not in value:
            raise ValueError("formats: 'onnx-int8' is quantized from the fp32 ONNX; add 'onnx'")
        return list(dict.fromkeys(value))


class Columns(_Strict):
    text_column: str = Field(default="text", min_length=1, max_length=200)
    # validate_default: the checks below must also run when the default is the one in conflict.
    text_pair_column: str | None = Field(
        default=None, min_length=1, max_length=200, validate_default=True
    )
    label_column: str = Field(default="label", min_length=1, max_length=200, validate_default=True)

    # One column in two roles gives a silently wrong model: with the label as the input, the
    # model reads the answer and scores 100% on every split. Fields validate in order, so each
    # check names the later field of the pair.
    @field_validator("text_pair_column")
    @classmethod
    def _pair_is_not_the_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value == info.data.get("text_column"):
            raise ValueError(f"{value!r} is already the text_column; name the second text")
        return value

    @field_validator("label_column")
    @classmethod
    def _label_is_not_an_input(cls, value: str, info: ValidationInfo) -> str:
        for role in ("text_column", "text_pair_column"):
            if value == info.data.get(role):
                raise ValueError(
                    f"{value!r} is also the {role}: the model would read the label as its input; "
                    "name the column that holds the labels"
                )
        return value


class MethodSpec(_Strict):
    """Everything about *how* to compress, independent of where the files are.

    The service's job body embeds these fields; the library's :class:`CompressionSpec` adds paths.
    """

    strategy: str = "fusion-random-forest"
    strategies: Literal["all"] | list[str] = "all"
    target: Target = Field(default_factory=default_target)
    distillation: Distillation = Field(default_factory=Distillation)
    options: Options = Field(default_factory=Options)
    export: Export = Field(default_factory=Export)

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value != AUTO and value not in STRATEGY_IDS:
            raise ValueError(
                f"unknown strategy {value!r}; use 'auto' or one of {list(STRATEGY_IDS)}"
            )
        return value

    @field_validator("strategies")
    @classmethod
    def _known_strategies(
        cls, value: Literal["all"] | list[str], info: ValidationInfo
    ) -> Literal["all"] | list[str]:
        if value == "all":
            return value
        unknown = [s for s in value if s not in STRATEGY_IDS]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; known: {list(STRATEGY_IDS)}")
        if not value:
            raise ValueError("strategies must name at least one strategy, or be 'all'")
        value = list(dict.fromkeys(value))
        # A field validator (``strategy`` is validated first), so the error names ``strategies``.
        walked = [*value, info.data["strategy"]] if "strategy" in info.data else value
        fusions = [s for s in FUSION_IDS if s in walked]
        signals = [s for s in value if s in SIGNAL_IDS]
        if fusions and len(signals) < MIN_SIGNAL_STRATEGIES_FOR_FUSION:
            missing = [s for s in SIGNAL_IDS if s not in signals]
            raise ValueError(
                f"{', '.join(fusions)} learns from single-signal trajectories: add at least "
                f"{MIN_SIGNAL_STRATEGIES_FOR_FUSION - len(signals)} of {missing} to strategies "
                "(or use strategies: 'all')"
            )
        return value

    @field_validator("distillation")
    @classmethod
    def _comparable(cls, value: Distillation, info: ValidationInfo) -> Distillation:
        # A strategy other than the two fixed baselines is compared at its walked trajectory.
        walked = info.data.get("strategies", "all")
        if walked == "all":
            return value
        available = {*walked, info.data.get("strategy"), DROP_TOP, UNIFORM}
        missing = [c for c in value.compare if c not in available]
        if missing:
            raise ValueError(
                f"distillation.compare names {missing}, which the sweep does not walk: add them "
                "to strategies, or compare only drop-top, uniform and walked strategies"
            )
        return value

    def walked_strategies(self) -> list[str]:
        """The strategies the sweep walks, in method order: the list, plus the final strategy."""
        chosen = set(STRATEGY_IDS if self.strategies == "all" else self.strategies)
        if self.strategy != AUTO:
            chosen.add(self.strategy)
        return [s for s in STRATEGY_IDS if s in chosen]


class CompressionSpec(MethodSpec):
    """A complete run of the library: the model, the data and the method."""

    model_dir: Path
    train: Path
    validation: Path | None = None
    test: Path | None = None
    columns: Columns = Field(default_factory=Columns)
    dataset_name: str | None = Field(default=None, max_length=200)

    def resolved_dataset_name(self) -> str:
        """The name the model card gives the data: ``dataset_name``, else the train file's stem,
        or its folder's name when the stem only names the split (``sst2/train.jsonl``)."""
        if self.dataset_name:
            return self.dataset_name
        if self.train.stem.lower() in SPLIT_FILE_STEMS and self.train.parent.name:
            return self.train.parent.name
        return self.train.stem
