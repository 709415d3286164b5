"""``layerfuse compress``: the whole method in-process, no service needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from .output import add_json_argument, print_json, summary_lines
from .progress import ProgressBar


def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``compress`` and ``submit`` share (api.md, Command line)."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--train", required=True, type=Path, help="training split (JSONL, CSV, TSV or Parquet)"
    )
    data.add_argument(
        "--validation", type=Path, help="validation split (default: 10%% of train, stratified)"
    )
    data.add_argument("--test", type=Path, help="test split, for reporting only")
    data.add_argument("--text-column", default="text")
    data.add_argument("--text-pair-column", default=None)
    data.add_argument("--label-column", default="label")
    method = parser.add_argument_group("method")
    method.add_argument(
        "--strategy",
        default="fusion-random-forest",
        help="strategy of the final model: a strategy id or 'auto'",
    )
    method.add_argument(
        "--strategies",
        default="all",
        help="trajectories the sweep walks: 'all' or a comma-separated list of ids",
    )
    target = method.add_mutually_exclusive_group()
    target.add_argument("--layers-to-remove", type=int, metavar="K")
    target.add_argument("--keep-layers", type=int, metavar="M")
    target.add_argument(
        "--max-accuracy-drop",
        type=float,
        metavar="D",
        help="deepest removal within D of the baseline validation accuracy (default 0.01)",
    )
    target.add_argument(
        "--select-best",
        action="store_true",
        help="the depth with the highest validation accuracy (the paper's criterion)",
    )
    method.add_argument("--no-distill", action="store_true", help="skip knowledge distillation")
    method.add_argument(
        "--onnx",
        action="store_true",
        help="also write model.onnx, checked against PyTorch's logits",
    )
    method.add_argument(
        "--int8",
        action="store_true",
        help="also write an int8 ONNX model (implies --onnx), its accuracy checked against fp32",
    )
    method.add_argument(
        "--trim-vocabulary",
        action="store_true",
        help="keep only the tokens the training and validation data use (a smaller embedding)",
    )
    method.add_argument(
        "--distill-epochs",
        type=int,
        default=None,
        help="recovery's maximum epochs at one layer removed (default 2; more per extra layer)",
    )
    method.add_argument(
        "--compare",
        default=None,
        metavar="IDS",
        help="candidates recovered beside the strategy's at the selected depth, comma-separated "
        "(default: drop-top,uniform; 'none' turns the comparison off)",
    )
    method.add_argument(
        "--no-race",
        action="store_true",
        help="recover every compared candidate fully instead of stopping those behind the leader",
    )
    method.add_argument("--max-length", type=int, default=128)
    method.add_argument("--n-calib", type=int, default=512)
    method.add_argument("--seed", type=int, default=0)
    method.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    method.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")


def _formats(args: argparse.Namespace) -> list[str]:
    if args.int8:
        return ["hf", "onnx", "onnx-int8"]
    return ["hf", "onnx"] if args.onnx else ["hf"]


def method_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The MethodSpec fields and dataset columns the arguments ask for."""
    if args.layers_to_remove is not None:
        target: dict[str, Any] = {"layers_to_remove": args.layers_to_remove}
    elif args.keep_layers is not None:
        target = {"keep_layers": args.keep_layers}
    elif args.select_best:
        target = {"select": "best"}
    else:
        target = {
            "max_accuracy_drop": 0.01 if args.max_accuracy_drop is None else args.max_accuracy_drop
        }
    strategies = (
        args.strategies
        if args.strategies == "all"
        else [s.strip() for s in args.strategies.split(",") if s.strip()]
    )
    return {
        "strategy": args.strategy,
        "strategies": strategies,
        "target": target,
        "distillation": distillation_fields(args),
        "export": {
            "formats": _formats(args),
            "vocabulary": "trim" if args.trim_vocabulary else "full",
        },
        "options": {
            "max_length": args.max_length,
            "n_calib": args.n_calib,
            "seed": args.seed,
            "device": args.device,
            "precision": args.precision,
        },
        "columns": {
            "text_column": args.text_column,
            "text_pair_column": args.text_pair_column,
            "label_column": args.label_column,
        },
    }


def distillation_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``distillation`` fields the arguments set; the rest keep the spec's defaults."""
    fields: dict[str, Any] = {"enabled": not args.no_distill}
    if args.distill_epochs is not None:
        fields["epochs"] = args.distill_epochs
    if args.compare is not None:
        names = [c.strip() for c in args.compare.split(",") if c.strip()]
        fields["compare"] = [] if names == ["none"] else names
    if args.no_race:
        fields["race"] = False
    return fields


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compress",
        help="compress a model in-process (no service needed)",
        description="Run the whole method in-process: measure, sweep, fuse, select, distill, "
        "export. Writes OUT/model/, OUT/report.json, OUT/model_card.md and plots.",
    )
    parser.add_argument(
        "--model", required=True, type=Path, help="Hugging Face model directory (safetensors)"
    )
    add_method_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every sweep step")
    add_json_argument(parser)
    parser.set_defaults(run=run)


class _BarReporter:
    """The library's ``Reporter`` drawn as the command line's progress bar."""

    def __init__(self, bar: ProgressBar):
        self.bar = bar

    def stage(self, stage: str) -> None:
        self.bar.stage(stage)

    def progress(self, progress: Any) -> None:
        self.bar.fraction(progress.fraction)

    def event(self, type: str, message: str, data: Any = None, level: str = "info") -> None:
        self.bar.event(type, message, level)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from layerfuse.compression import (
        CompressionCancelled,
        CompressionSpec,
        InvalidInputError,
        LayerfuseError,
    )

    try:
        spec = CompressionSpec(
            model_dir=args.model,
            train=args.train,
            validation=args.validation,
            test=args.test,
            **method_fields(args),
        )
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "spec"
            print(f"error: {field}: {error['msg']}", file=sys.stderr)
        return EXIT_BAD_INPUT

    from transformers.utils import logging as hf_logging

    from layerfuse.compression import compress

    # The library checks loading reports itself; transformers' own tables and bars are noise here.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        # The bar closes before any error is printed, so the message stands below it.
        with ProgressBar(args.verbose) as bar:
            result = compress(spec, args.out, reporter=_BarReporter(bar))
    except InvalidInputError as exc:
        where = f" ({exc.param})" if exc.param else ""
        print(f"error [{exc.code}]{where}: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CompressionCancelled, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LayerfuseError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print_json({**result.summary, "out_dir": str(result.out_dir)})
        return EXIT_OK
    for line in summary_lines(result.summary):
        print(line)
    files = ", ".join(a for a in result.summary["artifacts"] if "/" not in a)
    print(f"wrote {result.out_dir}/model and {files}")
    return EXIT_OK
