"""The client's TypedDicts are the server's object declarations, field for field, type for type.

The client must not import the service (it is installed without it), so instead of generating the
client's types, this test compares them with :mod:`layerfuse.service.objects`.
"""

from __future__ import annotations

import ast
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import pytest
from pydantic import BaseModel

from layerfuse import client
from layerfuse.service import objects, schemas

PAIRS: dict[type, type[BaseModel]] = {
    client.Model: objects.ModelObject,
    client.Dataset: objects.DatasetObject,
    client.Progress: objects.ProgressObject,
    client.JobError: objects.JobError,
    client.JobUrls: objects.JobUrls,
    client.Job: objects.JobObject,
    client.Event: objects.EventObject,
    client.Artifact: objects.ArtifactObject,
    client.WebhookAttempt: objects.AttemptObject,
    client.WebhookDelivery: objects.WebhookDeliveryObject,
    client.Worker: objects.WorkerObject,
}
NAMES = {server: typed.__name__ for typed, server in PAIRS.items()}


def _shape(annotation: Any) -> Any:
    """A comparable form of a type: names for the paired objects, sets for unions."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _shape(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return frozenset(_shape(a) for a in typing.get_args(annotation))
    if origin is Literal:
        return ("Literal", frozenset(typing.get_args(annotation)))
    if origin is not None:
        return (origin, tuple(_shape(a) for a in typing.get_args(annotation)))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return NAMES[annotation]
    if annotation in PAIRS:
        return annotation.__name__
    return annotation


@pytest.mark.parametrize("typed", list(PAIRS), ids=lambda t: t.__name__)
def test_client_types_match_the_server_objects(typed: type) -> None:
    server = PAIRS[typed]
    hints = typing.get_type_hints(typed)
    fields = {name: f.annotation for name, f in server.model_fields.items()}
    assert list(hints) == list(fields), f"{typed.__name__} fields differ from {server.__name__}"
    for name, annotation in fields.items():
        assert _shape(hints[name]) == _shape(annotation), f"{typed.__name__}.{name}"


def test_every_server_object_has_a_client_type() -> None:
    declared = {
        cls
        for cls in vars(objects).values()
        if isinstance(cls, type)
        and issubclass(cls, objects.ApiObject)
        and cls is not objects.ApiObject
    }
    # The client returns the lists' .data.
    assert declared - set(PAIRS.values()) == {objects.ArtifactList, objects.WorkerList}
    page = typing.get_type_hints(client.Page)
    assert list(page) == list(schemas.Page.model_fields)


def test_the_client_imports_nothing_of_the_service() -> None:
    tree = ast.parse(Path(client.__file__).read_text(encoding="utf-8"))
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert not [name for name in imported if name.startswith(("layerfuse.service", "fastapi"))]
