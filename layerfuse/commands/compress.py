"""``layerfuse compress``: the whole method in-process, no service needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


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
    method.add_argument("--distill-epochs", type=int, default=3)
    method.add_argument("--max-length", type=int, default=128)
    method.add_argument("--n-calib", type=int, default=512)
    method.add_argument("--seed", type=int, default=0)
    method.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    method.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")


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
        "distillation": {"enabled": not args.no_distill, "epochs": args.distill_epochs},
        "export": {"formats": ["hf", "onnx"] if args.onnx else ["hf"]},
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
    parser.set_defaults(run=run)


class _BarReporter:
    """A tqdm bar over the whole job; stages and decisions printed above it."""

    def __init__(self, verbose: bool):
        from tqdm import tqdm

        self.verbose = verbose
        self.bar = tqdm(
            total=1000,
            unit="‰",
            bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
            file=sys.stderr,
        )

    def stage(self, stage: str) -> None:
        self.bar.set_description(stage.replace("_", " "))

    def progress(self, progress) -> None:
        self.bar.update(int(progress.fraction * 1000) - self.bar.n)

    def event(self, type: str, message: str, data=None, level: str = "info") -> None:
        if type in ("message", "status") or level != "info" or (self.verbose and type == "metrics"):
            self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


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
    reporter = _BarReporter(args.verbose)
    try:
        result = compress(spec, args.out, reporter=reporter)
    except InvalidInputError as exc:
        reporter.close()
        where = f" ({exc.param})" if exc.param else ""
        print(f"error [{exc.code}]{where}: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CompressionCancelled, KeyboardInterrupt):
        reporter.close()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LayerfuseError as exc:
        reporter.close()
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    reporter.close()
    s = result.summary
    base, final = s["baseline"]["validation"], s["final"]["validation"]
    print(f"{s['strategy']}: removed layers {s['removed_layers']}, kept {s['kept_layers']}")
    if not s["met_target"]:
        print(
            "no depth kept validation accuracy within the target before distillation, so the "
            "model was kept whole; try --max-accuracy-drop 0.05, --layers-to-remove K or "
            "--select-best (distillation then recovers accuracy)"
        )
    print(
        f"validation accuracy {base['accuracy']:.4f} -> {final['accuracy']:.4f}; "
        f"parameters {s['parameters']['before']:,} -> {s['parameters']['after']:,}"
    )
    print(
        f"wrote {result.out_dir}/model and {', '.join(a for a in s['artifacts'] if '/' not in a)}"
    )
    return EXIT_OK
