"""The package as users install it: one top-level name, ``layerfuse``, and no bare imports.

From Python 3.14 the standard library owns ``compression`` (PEP 784) and wins over
site-packages, and ``service`` / ``worker`` are names other distributions install too; so the
wheel must carry nothing else at the top level, and no module may import the folders by their
bare names.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("compression", "service", "worker")


def _source_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO / name for name in listed if (REPO / name).is_file()]


def test_no_module_imports_a_folder_by_its_bare_name() -> None:
    offenders = []
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders += [
                f"{path.relative_to(REPO)}:{node.lineno}: {name}"
                for name in names
                if name.split(".")[0] in FOLDERS
            ]
    assert offenders == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the working tree (the tree itself stays clean)."""
    src = tmp_path_factory.mktemp("src")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        origin, target = REPO / name, src / name
        if not origin.exists() and not origin.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            os.symlink(os.readlink(origin), target)
        else:
            shutil.copy2(origin, target)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("layerfuse-*.whl")
    return built


def test_the_wheel_installs_only_the_layerfuse_name(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"layerfuse"}
    for expected in (
        "layerfuse/compression/pipeline.py",
        "layerfuse/service/app.py",
        "layerfuse/service/migrations/alembic.ini",
        "layerfuse/service/migrations/versions/0001_initial_schema.py",
        "layerfuse/worker/tasks.py",
    ):
        assert expected in names


def test_the_wheel_states_the_supported_pythons(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        headers = HeaderParser().parsestr(archive.read(metadata).decode())
    assert headers["Requires-Python"] == "<3.15,>=3.11"
    assert sys.version_info[:2] >= (3, 11)


def test_a_standard_library_compression_package_cannot_shadow_ours(
    wheel: Path, tmp_path: Path
) -> None:
    """Python 3.14's ``compression`` package, imitated: ours still imports as layerfuse's."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    stdlib_like = tmp_path / "stdlib" / "compression"
    stdlib_like.mkdir(parents=True)
    (stdlib_like / "__init__.py").write_text("STDLIB = True\n")
    code = (
        "import compression, layerfuse.compression as ours; "
        "from layerfuse.compression import CompressionSpec; "
        "print(compression.STDLIB, ours.__file__)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "stdlib"), str(tmp_path / "site")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == "True"
    assert Path(out[1]).is_relative_to(tmp_path / "site")
