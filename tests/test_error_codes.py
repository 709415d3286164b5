"""One registry of error codes: every code the source gives is in it, and the docs show it."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from layerfuse.compression.error_codes import ERROR_CODES, markdown_table

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("compression", "service", "worker", "layerfuse/commands", "layerfuse/client.py")
# code="x", code = "x", "code": "x", and the positional codes of _error(...) / IntegrationError(...)
LITERAL = re.compile(
    r"""(?:\bcode\s*=\s*|["']code["']\s*:\s*|\b_error\(\s*|IntegrationError\(\s*)["']([a-z_]+)["']"""
)


def _product_sources() -> list[Path]:
    files: list[Path] = []
    for entry in PRODUCT:
        path = REPO / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def test_every_code_in_the_source_is_registered() -> None:
    found: dict[str, str] = {}
    for path in _product_sources():
        for match in LITERAL.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(match.group(1), str(path.relative_to(REPO)))
    assert len(found) > 50, "the pattern no longer finds the codes"
    missing = {code: where for code, where in found.items() if code not in ERROR_CODES}
    assert missing == {}, "add these codes to layerfuse.compression.error_codes"


def test_url_refusal_codes_are_registered() -> None:
    """The webhook and MLflow checks build their codes from the refusal's kind."""
    from layerfuse.service.netguard import UrlRefused

    kinds = typing.get_args(typing.get_type_hints(UrlRefused.__init__)["kind"])
    assert set(kinds) == {"invalid", "unresolvable", "forbidden"}
    for prefix in ("webhook_url", "mlflow_tracking_uri"):
        for kind in kinds:
            assert f"{prefix}_{kind}" in ERROR_CODES


def test_the_docs_error_table_is_the_registry() -> None:
    docs = (REPO / "docs" / "service.md").read_text(encoding="utf-8")
    assert markdown_table() in docs
    documented = re.findall(r"^\| `([a-z_]+)` \|", docs, flags=re.MULTILINE)
    assert documented == list(ERROR_CODES)


def test_problem_statuses_come_from_the_registry() -> None:
    from layerfuse.service.errors import ApiError, Unprocessable

    assert Unprocessable("x", code="dataset_not_found").status == 422
    assert ApiError("x", code="service_busy").status == 503
    assert ApiError("x", code="resource_in_use").status == 409
