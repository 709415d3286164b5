"""constraints.txt, the exact versions the image, the quickstart and CI install (scripts/lock).

A dependency added to pyproject.toml without rerunning scripts/lock would install unpinned in
the image, and a range narrowed past its pin would make every install with the constraints fail
to resolve: both are caught here, before a user's build meets them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
# Pinned in pyproject.toml itself; its build (CPU or CUDA) is the installer's choice.
UNLOCKED = {"torch", "layerfuse"}


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{line!r} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines.extend(extra)
    return [Requirement(line) for line in lines]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    problems = []
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        if name in UNLOCKED:
            continue
        if name not in pins:
            problems.append(f"{requirement.name}: not in constraints.txt")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement.name}: pinned {pins[name]}, outside {requirement}")
    assert not problems, "rerun scripts/lock:\n" + "\n".join(problems)
