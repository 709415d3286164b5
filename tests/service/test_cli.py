"""The service's command line, where it can be checked without servers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from layerfuse.cli import build_parser
from layerfuse.client import _extract_model
from layerfuse.commands.processes import _local_key

REPO = Path(__file__).resolve().parents[2]


def test_serve_refuses_placeholder_keys(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LAYERFUSE_DATA_DIR": str(tmp_path),
        "LAYERFUSE_API_KEYS": "acme:changeme",
        "LAYERFUSE_ENV": "production",
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "layerfuse.cli", "serve", "--port", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "placeholder" in result.stderr and "changeme" not in result.stderr


def test_the_up_key_is_generated_once_and_private(tmp_path: Path) -> None:
    key = _local_key(tmp_path)
    assert key.startswith("lf_") and len(key) > 40
    assert stat.S_IMODE((tmp_path / "api_key").stat().st_mode) == 0o600
    assert _local_key(tmp_path) == key


def test_model_zip_extraction_keeps_to_the_model_folder(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/config.json", "{}")
        zf.writestr("model/../escape.txt", "x")
        zf.writestr("../escape.txt", "x")
        zf.writestr("/abs.txt", "x")
        zf.writestr("model/sub/deep.txt", "x")
    out = tmp_path / "out"
    _extract_model(archive, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "model",
        "model/config.json",
    ]
    assert not (tmp_path / "escape.txt").exists()


def test_submit_takes_the_compress_options_and_the_client_ones() -> None:
    args = build_parser().parse_args(
        [
            "submit",
            "--model",
            "m",
            "--train",
            "t.jsonl",
            "--out",
            "o",
            "--strategy",
            "drop-top",
            "--layers-to-remove",
            "2",
            "--no-distill",
            "--url",
            "http://x",
            "--api-key",
            "k",
            "--metadata",
            "team=search",
        ]
    )
    assert (args.strategy, args.layers_to_remove, args.no_distill) == ("drop-top", 2, True)
    assert (args.url, args.api_key, args.metadata) == ("http://x", "k", ["team=search"])
