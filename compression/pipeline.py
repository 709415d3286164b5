"""The whole method, top to bottom: prepare, fine-tune, baseline, sweep, fuse, select, distill,
export (method.md, "Stages of a job"). :func:`compress` is the library's one entry point.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

import safetensors.torch
import torch

from . import artefacts, onnx_export
from .batching import Encoded, stratified_subset
from .catalogue import FUSION_IDS, RANDOM, SIGNAL_IDS
from .datasets import LabelledData, prepare_data, read_split
from .device import Runtime
from .errors import InvalidInputError, LayerfuseError
from .evaluation import EvalSet, Metrics, latency_ms, parameter_count, predict, size_mb
from .fusion import FusionModels, build_rows, fit_fusion
from .models import (
    LoadedModel,
    head_label_order,
    inspect_model_dir,
    load_model,
    pruned_copy,
    reload_max_abs_diff,
    save_model,
)
from .progress import CancelToken, NeverCancel, NullReporter, ProgressTracker, Reporter, Stage
from .selection import Selection, select, validate_target
from .signals import BLOCK_INFLUENCE
from .spec import CompressionSpec
from .strategies import (
    BlockInfluenceStrategy,
    DropTopStrategy,
    RandomStrategy,
    SignalStrategy,
    Strategy,
)
from .sweep import EMPTY, Step, Sweep, Trajectory
from .training import Distill, TrainResult, default_learning_rate, train

ARTIFACT_NAMES = ("report.json", "model_card.md", "signals.csv", "curves.png", "signals.png")
CALIBRATION_BATCH_SIZE = 32
# A reloaded export whose logits differ by more than this was not saved faithfully (a layer
# re-initialised, a wrong config); bf16 vs fp32 noise stays orders of magnitude below it.
MAX_RELOAD_DIFF = 1e-2


@dataclass
class CompressionResult:
    """What a run leaves in ``out_dir``.

    ``out_dir`` holds ``model/`` (a Hugging Face directory), ``report.json``, ``model_card.md``,
    ``signals.csv``, ``curves.png`` and ``signals.png``. ``summary`` is the short result the
    service shows on the job (api.md, ``result``).
    """

    out_dir: Path
    report: dict[str, Any]
    summary: dict[str, Any]
    artifacts: list[str] = field(default_factory=list)


def compress(
    spec: CompressionSpec,
    out_dir: str | Path,
    *,
    reporter: Reporter | None = None,
    cancel: CancelToken | None = None,
    checkpoint_dir: str | Path | None = None,
) -> CompressionResult:
    """Run the whole method on ``spec`` and write the compressed model and report to ``out_dir``.

    Args:
        reporter: receives stages, progress and events (default: ignored).
        cancel: polled between batches; when it fires the run raises ``CompressionCancelled``.
        checkpoint_dir: where the fine-tuned teacher and the sweep's caches are kept, so a run
            restarted with the same spec and directory resumes instead of starting over.

    Raises:
        InvalidInputError: the model, the data or the spec cannot be used (``.code``, ``.param``).
        CompressionCancelled: the cancel token fired.
    """
    run = _Run(
        spec,
        Path(out_dir),
        reporter or NullReporter(),
        cancel or NeverCancel(),
        Path(checkpoint_dir) if checkpoint_dir else None,
    )
    return run.execute()


class _Run:
    def __init__(
        self,
        spec: CompressionSpec,
        out_dir: Path,
        reporter: Reporter,
        cancel: CancelToken,
        checkpoint_dir: Path | None,
    ):
        self.spec = spec
        self.out_dir = out_dir
        self.reporter = reporter
        self.tracker = ProgressTracker(reporter, cancel)
        self.checkpoint_dir = checkpoint_dir
        self.options = spec.options
        self.seed = spec.options.seed
        self.timings: dict[str, float] = {}
        self.report: dict[str, Any] = {}

    def execute(self) -> CompressionResult:
        self._started = time.perf_counter()
        torch.manual_seed(self.seed)
        self._stage("preparing", self.prepare)
        if self.needs_teacher:
            self._stage("fine_tuning_teacher", self.fine_tune_teacher)
        else:
            self.tracker.skip("fine_tuning_teacher")
        self._stage("evaluating_baseline", self.evaluate_baseline)
        self._stage("sweeping", self.sweep_strategies)
        self._stage("fusing", self.fuse)
        self._stage("selecting", self.select_depth)
        self._stage("distilling", self.distill)
        self._stage("exporting", self.export)
        return CompressionResult(
            self.out_dir, self.report, self.summary(), sorted(self.artifact_names)
        )

    def _stage(self, stage: Stage, body) -> None:
        self.tracker.enter(stage)
        self._stage_started = time.perf_counter()
        body()
        # export records its own time before writing the report; keep that figure.
        self.timings.setdefault(stage, round(time.perf_counter() - self._stage_started, 3))

    def _event(self, type_: str, message: str, **data: Any) -> None:
        self.reporter.event(type_, message, data or None)  # type: ignore[arg-type]

    # -- 1. prepare -----------------------------------------------------------------------------

    def prepare(self) -> None:
        spec, options = self.spec, self.options
        self.runtime = Runtime.resolve(options.device, options.precision)
        info = inspect_model_dir(spec.model_dir)
        columns = spec.columns.model_dump()
        train = read_split(spec.train, name="train", **columns)
        validation = (
            read_split(spec.validation, name="validation", **columns) if spec.validation else None
        )
        test = read_split(spec.test, name="test", **columns) if spec.test else None
        order = (
            None
            if options.fine_tune_teacher == "always"
            else head_label_order(info, set(train.labels))
        )
        self.data: LabelledData = prepare_data(
            train,
            validation,
            test,
            seed=self.seed,
            validation_fraction=options.validation_fraction,
            label_order=order,
        )
        if "onnx" in spec.export.formats:
            onnx_export.check_available()
        self.num_layers = info.num_layers
        limit = options.max_layers_removed or self.num_layers - 1
        if limit > self.num_layers - 1:
            raise InvalidInputError(
                f"options.max_layers_removed={limit} but the model has {self.num_layers} layers; "
                f"at most {self.num_layers - 1} can be removed",
                code="options_out_of_range",
                param="options.max_layers_removed",
            )
        self.max_removed = limit
        validate_target(spec.target, self.num_layers, self.max_removed)
        self.loaded: LoadedModel = load_model(
            info, self.data.labels, head_matches=order is not None
        )
        self.model = self.loaded.model
        self.model.to(self.runtime.device)  # type: ignore[arg-type]
        if options.fine_tune_teacher == "never" and not self.loaded.has_trained_head:
            raise InvalidInputError(
                f"the model has no classification head for the labels {self.data.labels}; set "
                "options.fine_tune_teacher to 'auto' to train one first",
                code="model_head_missing",
                param="options.fine_tune_teacher",
            )
        self.needs_teacher = (
            options.fine_tune_teacher == "always" or not self.loaded.has_trained_head
        )
        tok = self.loaded.tokenizer
        max_length = self._max_length()
        encode = lambda split: Encoded(split, self.data.label_ids(split), tok, max_length)  # noqa: E731
        self.train_set = encode(self.data.train)
        self.validation = EvalSet(encode(self.data.validation), options.eval_batch_size)
        self.test = (
            EvalSet(encode(self.data.test), options.eval_batch_size) if self.data.test else None
        )
        calib = stratified_subset(self.train_set.labels, options.n_calib, self.seed)
        self.calibration = self.train_set.sorted_batches(CALIBRATION_BATCH_SIZE, calib)
        self.parameters = parameter_count(self.model)
        self.report["model"] = {
            "architecture": type(self.model).__name__,
            "model_type": info.model_type,
            "base_model": info.base_name,
            "num_layers": self.num_layers,
            "parameters": self.parameters,
            "size_mb": size_mb(self.parameters),
        }
        self.report["dataset"] = {
            "labels": self.data.labels,
            "train": len(self.data.train),
            "validation": len(self.data.validation),
            "test": len(self.data.test) if self.data.test else None,
            "validation_carved_from_train": self.data.validation_carved,
            "calibration": len(calib),
        }
        self.report["options"] = self.resolved_options()
        self._event(
            "message",
            f"loaded {info.model_type} with {self.num_layers} layers and "
            f"{len(self.data.train)} training examples on {self.runtime.device.type}"
            f" ({'bf16' if self.runtime.bf16 else 'fp32'})",
            **self.runtime.describe(),
        )

    def _max_length(self) -> int:
        """``options.max_length``, capped at the positions the model has embeddings for."""
        config = self.model.config
        positions = getattr(config, "max_position_embeddings", None)
        if not positions:
            return self.options.max_length
        limit = int(positions) - self.loaded.adapter.position_offset
        if self.options.max_length > limit:
            self._event(
                "message",
                f"max_length {self.options.max_length} exceeds the model's {limit} positions; "
                f"using {limit}",
                max_length=limit,
            )
            return limit
        return self.options.max_length

    def resolved_options(self) -> dict[str, Any]:
        """The spec with defaults filled in; file paths reduced to their names (no server paths)."""
        spec = self.spec
        resolved = spec.model_dump(
            mode="json", exclude={"model_dir", "train", "validation", "test"}
        )
        resolved["dataset_name"] = spec.resolved_dataset_name()
        resolved["files"] = {
            k: (p.name if p else None)
            for k, p in (
                ("model", spec.model_dir),
                ("train", spec.train),
                ("validation", spec.validation),
                ("test", spec.test),
            )
        }
        resolved["walked_strategies"] = spec.walked_strategies()
        resolved["options"]["max_layers_removed"] = self.max_removed
        lr = default_learning_rate(self.parameters)
        resolved["options"]["teacher_learning_rate"] = self.options.teacher_learning_rate or lr
        resolved["distillation"]["learning_rate"] = spec.distillation.learning_rate or lr
        resolved["runtime"] = self.runtime.describe()
        return resolved

    # -- 2. teacher -----------------------------------------------------------------------------

    def fine_tune_teacher(self) -> None:
        options = self.options
        checkpoint = self.checkpoint_dir / "teacher.safetensors" if self.checkpoint_dir else None
        if checkpoint is not None and checkpoint.is_file():
            safetensors.torch.load_model(self.model, checkpoint, device=str(self.runtime.device))
            self.report["teacher"] = {"fine_tuned": True, "resumed_from_checkpoint": True}
            self._event("message", "teacher restored from the job's checkpoint")
            return
        result = train(
            self.model,
            self.train_set,
            self.validation,
            self.runtime,
            epochs=options.teacher_epochs,
            learning_rate=options.teacher_learning_rate or default_learning_rate(self.parameters),
            batch_size=self.spec.distillation.batch_size,
            seed=self.seed,
            on_batch=self.tracker.update,
            on_epoch=lambda epoch, m: self._event(
                "metrics",
                f"teacher epoch {epoch}: validation accuracy {m['accuracy']:.3f}",
                epoch=epoch,
                val_accuracy=m["accuracy"],
                val_loss=m["loss"],
            ),
        )
        self.report["teacher"] = {"fine_tuned": True, **_train_report(result)}
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            safetensors.torch.save_model(self.model, str(checkpoint))

    # -- 3. baseline ----------------------------------------------------------------------------

    def evaluate_baseline(self) -> None:
        self.report.setdefault("teacher", {"fine_tuned": False})
        validation = self.validation.evaluate(self.model, self.runtime, self.tracker.update)
        test = self.test.evaluate(self.model, self.runtime) if self.test else None
        self.baseline: dict[str, Metrics | None] = {"validation": validation, "test": test}
        self.baseline_accuracy = validation["accuracy"]
        self.report["baseline"] = {
            **self.baseline,
            "latency_ms": self._latency(self.model),
        }
        self._event(
            "metrics",
            f"full model: validation accuracy {validation['accuracy']:.3f}",
            val_accuracy=validation["accuracy"],
            test_accuracy=test and test["accuracy"],
        )

    def _latency(self, model) -> dict[str, float] | None:
        if not self.options.measure_latency:
            return None
        return latency_ms(model, self.validation.encoded, self.runtime)

    # -- 4. sweep -------------------------------------------------------------------------------

    def sweep_strategies(self) -> None:
        walked = self.spec.walked_strategies()
        strategies: list[Strategy] = []
        for sid in walked:
            if sid in SIGNAL_IDS:
                strategies.append(SignalStrategy(sid))
            elif sid == RANDOM:
                strategies += [
                    RandomStrategy(i, self.seed) for i in range(self.options.random_seeds)
                ]
            elif sid == "drop-top":
                strategies.append(DropTopStrategy())
            elif sid == "block-influence":
                strategies.append(BlockInfluenceStrategy())
        self.wants_fusion = [s for s in walked if s in FUSION_IDS]
        probe = bool(self.wants_fusion) and self.options.leave_one_out_probe
        units = len(strategies) * self.max_removed + (self.num_layers if probe else 0)
        self._work_done = 0
        self._work_total = max(units, 1)
        checkpoint = self.checkpoint_dir / "sweep.json" if self.checkpoint_dir else None
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
        self.sweep = Sweep(
            self.model,
            self.loaded.adapter,
            self.calibration,
            self.validation,
            self.test,
            self.runtime,
            self.seed,
            self._on_work,
            checkpoint,
        )
        self.sweep.metrics.setdefault(EMPTY, self.baseline)
        self.probe_steps: list[Step] = []
        if probe:
            self.probe_steps = self.sweep.probe()
            self._work_done += self.num_layers
        self.trajectories: dict[str, Trajectory] = {}
        for strategy in strategies:
            self.trajectories[strategy.id] = self.sweep.walk(
                strategy, self.max_removed, self._on_step
            )
        self._event(
            "message",
            f"sweep done: {self.sweep.measurements} measurements, "
            f"{self.sweep.cache_hits} answered from the per-state cache",
            measurements=self.sweep.measurements,
            cache_hits=self.sweep.cache_hits,
        )

    def _on_work(self, fraction: float) -> None:
        self.tracker.update(min((self._work_done + fraction) / self._work_total, 1.0))

    def _on_step(self, trajectory: Trajectory, step: Step) -> None:
        self._work_done += 1
        validation = self.sweep.metrics[step.after]["validation"]
        assert validation is not None
        k = len(step.after)
        self._event(
            "metrics",
            f"{trajectory.strategy} removed layer {step.layer} (k={k}): "
            f"validation accuracy {validation['accuracy']:.3f}",
            strategy=trajectory.strategy,
            k=k,
            layer=step.layer,
            val_accuracy=validation["accuracy"],
        )

    # -- 5. fusion ------------------------------------------------------------------------------

    def fuse(self) -> None:
        self.fusion: FusionModels | None = None
        if not self.wants_fusion:
            self.report["fusion"] = {
                "rows": 0,
                "features": [],
                "linear-regression": {"coefficients": {}},
                "random-forest": {"feature_importances": {}},
            }
            return
        steps = self.probe_steps + [s for t in self.trajectories.values() for s in t.steps]
        self.fusion = fit_fusion(build_rows(steps, self.sweep), self.seed)
        self.report["fusion"] = self.fusion.explain()
        self._work_done, self._work_total = 0, len(self.wants_fusion) * self.max_removed
        decisions = {}
        for strategy in self.fusion.strategies(self.options.fusion_uses_measured):
            if strategy.id in self.wants_fusion:
                self.trajectories[strategy.id] = self.sweep.walk(
                    strategy, self.max_removed, self._on_step
                )
                decisions[strategy.id] = strategy.decisions
        self.report["fusion"]["decisions"] = decisions

    # -- 6. select ------------------------------------------------------------------------------

    def select_depth(self) -> None:
        curves = {sid: self.sweep.curve(t) for sid, t in self.trajectories.items()}
        self.selection: Selection = select(
            curves,
            self.spec.strategy,
            self.spec.target,
            self.num_layers,
            self.baseline_accuracy,
        )
        self.report["strategies"] = self._strategies_report(curves)
        self.report["probe"] = [
            {"layer": step.layer, **self.sweep.metrics[step.after]} for step in self.probe_steps
        ]
        self.report["signals"] = self._signals_report()
        self.report["selection"] = self.selection.to_report(self.spec.target)
        s = self.selection
        note = "" if s.met_target else " (no depth met the target; the model is kept whole)"
        self._event(
            "message",
            f"selected {s.strategy}: remove layers {s.removed_layers} "
            f"(k={s.layers_removed}), validation accuracy {s.validation_accuracy:.3f}{note}",
            strategy=s.strategy,
            removed_layers=s.removed_layers,
            met_target=s.met_target,
        )

    def _strategies_report(self, curves: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        report: dict[str, Any] = {}
        seeds = [sid for sid in curves if sid.startswith(f"{RANDOM}/")]
        for sid, trajectory in self.trajectories.items():
            if sid.startswith(f"{RANDOM}/") and seeds and sid == seeds[0]:
                report[RANDOM] = {
                    "removal_order": [],
                    "seeds": seeds,
                    "curve": _mean_curve([curves[s] for s in seeds]),
                }
            report[sid] = {"removal_order": trajectory.removal_order, "curve": curves[sid]}
        return report

    def _signals_report(self) -> list[dict[str, Any]]:
        rows = []
        for state in sorted(self.sweep.signals, key=lambda s: (len(s), sorted(s))):
            for layer, values in sorted(self.sweep.signals[state].items()):
                rows.append(
                    {
                        "removed": sorted(state),
                        "layer": layer,
                        **{sid: values[sid] for sid in SIGNAL_IDS},
                        BLOCK_INFLUENCE: values[BLOCK_INFLUENCE],
                    }
                )
        return rows

    # -- 7. distill -----------------------------------------------------------------------------

    def distill(self) -> None:
        kd = self.spec.distillation
        self.student = pruned_copy(self.model, self.loaded.adapter, self.selection.kept_layers)
        before = self.sweep.metrics[frozenset(self.selection.removed_layers)]
        enabled = kd.enabled and self.selection.layers_removed > 0
        after: dict[str, Metrics | None] = dict(before)
        epochs_run, detail = 0, {}
        if enabled:
            train_batches = self.train_set.sorted_batches(self.options.eval_batch_size)
            teacher_logits = predict(self.model, train_batches, self.runtime, len(self.train_set))
            result = train(
                self.student,
                self.train_set,
                self.validation,
                self.runtime,
                epochs=kd.epochs,
                learning_rate=kd.learning_rate or default_learning_rate(self.parameters),
                batch_size=kd.batch_size,
                seed=self.seed,
                distill=Distill(teacher_logits, kd.temperature, kd.alpha),
                on_batch=self.tracker.update,
                on_epoch=lambda epoch, m: self._event(
                    "metrics",
                    f"distillation epoch {epoch}: validation accuracy {m['accuracy']:.3f}",
                    epoch=epoch,
                    val_accuracy=m["accuracy"],
                    val_loss=m["loss"],
                ),
            )
            after = {
                "validation": result.best,
                "test": self.test.evaluate(self.student, self.runtime) if self.test else None,
            }
            epochs_run, detail = result.epochs_run, _train_report(result)
        self.after = after
        self.report["distillation"] = {
            "enabled": enabled,
            "before": before,
            "after": after,
            "epochs_run": epochs_run,
            "temperature": kd.temperature,
            "alpha": kd.alpha,
            **detail,
        }

    # -- 8. export ------------------------------------------------------------------------------

    def export(self) -> None:
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        model_dir = out / "model"
        save_model(self.student, self.loaded.tokenizer, model_dir)
        probe = self.validation.batches[0].inputs
        diff = reload_max_abs_diff(model_dir, self.student, probe)
        if diff > MAX_RELOAD_DIFF:
            raise LayerfuseError(
                f"the saved model's logits differ from the trained model's by {diff:.2e}",
                code="export_failed",
            )
        parameters = parameter_count(self.student)
        final_size = size_mb(parameters)
        validation, test = self.after["validation"], self.after["test"]
        basis = "test" if test else "validation"
        original, final = self.baseline[basis], self.after[basis]
        assert original is not None and final is not None
        original_ratio = 100 * original["accuracy"] / size_mb(self.parameters)
        final_ratio = 100 * final["accuracy"] / final_size
        self.report["final"] = {
            "validation": validation,
            "test": test,
            "num_layers": len(self.selection.kept_layers),
            "parameters": parameters,
            "size_mb": final_size,
            "safetensors_bytes": sum(p.stat().st_size for p in model_dir.glob("*.safetensors")),
            "latency_ms": self._latency(self.student),
            "accuracy_to_size_ratio": final_ratio,
            "original_accuracy_to_size_ratio": original_ratio,
            "improvement_factor": final_ratio / original_ratio,
            "ratio_basis": f"{basis} accuracy in % / size in MB",
            "note": "Layer pruning alone cannot reach the paper's 18.84x: the embeddings stay. "
            "The factor is reported as measured.",
        }
        self.report["export"] = {
            "formats": self.spec.export.formats,
            "reload_max_abs_logit_diff": diff,
        }
        self.artifact_names = list(ARTIFACT_NAMES)
        if "onnx" in self.spec.export.formats:
            self.report["export"]["onnx"] = self._export_onnx(out / "model.onnx")
            self.artifact_names.append("model.onnx")
        self.timings["exporting"] = round(time.perf_counter() - self._stage_started, 3)
        self.timings["total"] = round(time.perf_counter() - self._started, 3)
        self.report["timings"] = self.timings
        self.report["sweep"] = {
            "measurements": self.sweep.measurements,
            "cache_hits": self.sweep.cache_hits,
        }
        card = dict(
            base_model=self.report["model"]["base_model"],
            dataset_name=self.spec.resolved_dataset_name(),
        )
        artefacts.write_model_card(self.report, model_dir / "README.md", **card)
        artefacts.write_model_card(self.report, out / "model_card.md", **card)
        artefacts.write_signals_csv(self.report, out / "signals.csv")
        artefacts.plot_curves(self.report, out / "curves.png")
        artefacts.plot_signals_heatmap(self.report, out / "signals.png")
        artefacts.write_report(self.report, out / "report.json")
        self.artifact_names += [
            f"model/{p.name}" for p in sorted(model_dir.iterdir()) if p.is_file()
        ]
        for name in ARTIFACT_NAMES:
            self._event("artifact", f"wrote {name}", name=name)

    def _export_onnx(self, path: Path) -> dict[str, Any]:
        """model.onnx from an fp32 CPU copy of the student, checked against PyTorch's logits."""
        cpu = Runtime(torch.device("cpu"), bf16=False)
        model = copy.deepcopy(self.student).float().cpu().eval()
        model.set_attn_implementation("sdpa")
        batches = self.validation.batches
        pytorch_latency = latency_ms(model, self.validation.encoded, cpu)  # before onnxruntime runs
        onnx_export.export_onnx(model, batches[-1], path)
        session = onnx_export.OnnxModel(path)
        diff = onnx_export.max_abs_diff(session, model, batches[:4])
        if diff > onnx_export.TOLERANCE:
            raise LayerfuseError(
                f"model.onnx differs from the PyTorch model by {diff:.2e} in logits "
                f"(tolerance {onnx_export.TOLERANCE:.0e})",
                code="export_onnx_mismatch",
            )
        self._event(
            "artifact",
            f"wrote model.onnx (max logit difference to PyTorch {diff:.1e})",
            name="model.onnx",
            max_abs_diff=diff,
        )
        return {
            "file": path.name,
            "bytes": path.stat().st_size,
            "opset": onnx_export.OPSET,
            "max_abs_logit_diff": diff,
            "tolerance": onnx_export.TOLERANCE,
            "checked_examples": sum(len(b) for b in batches[:4]),
            "latency_ms": {
                "onnxruntime_cpu": onnx_export.latency_ms(session, self.validation.encoded),
                "pytorch_cpu_fp32": pytorch_latency,
            },
        }

    def summary(self) -> dict[str, Any]:
        r, s = self.report, self.selection
        return {
            "strategy": s.strategy,
            "removed_layers": s.removed_layers,
            "kept_layers": s.kept_layers,
            "met_target": s.met_target,
            "baseline": {"validation": self.baseline["validation"], "test": self.baseline["test"]},
            "final": {"validation": self.after["validation"], "test": self.after["test"]},
            "parameters": {"before": self.parameters, "after": r["final"]["parameters"]},
            "size_mb": {"before": r["model"]["size_mb"], "after": r["final"]["size_mb"]},
            "latency_ms": {
                "before": r["baseline"]["latency_ms"],
                "after": r["final"]["latency_ms"],
            },
            "accuracy_to_size_ratio": r["final"]["accuracy_to_size_ratio"],
            "improvement_factor": r["final"]["improvement_factor"],
            "artifacts": sorted(self.artifact_names),
        }


def _train_report(result: TrainResult) -> dict[str, Any]:
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "history": result.history,
    }


def _mean_curve(curves: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The seeds' mean at each depth (validation and test metrics averaged key by key)."""
    mean = []
    for points in zip(*curves, strict=True):
        entry: dict[str, Any] = {"layers_removed": points[0]["layers_removed"], "removed": []}
        for split in ("validation", "test"):
            if points[0][split] is None:
                entry[split] = None
            else:
                entry[split] = {m: fmean(p[split][m] for p in points) for m in points[0][split]}
        mean.append(entry)
    return mean
