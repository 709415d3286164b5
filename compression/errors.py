"""Errors raised by the compression library.

Every error carries a stable ``code`` a client can branch on, a ``message`` a person can act on,
and, where one field of the input is to blame, ``param`` naming it (``dataset.label_column``,
``target.keep_layers``...). The service maps these to HTTP problems and failed jobs; the CLI maps
them to exit status 2 (bad input) or 1 (anything else).

    LayerfuseError
    ├── InvalidInputError        the model, the dataset or the spec is unusable as given
    │   ├── ModelError
    │   └── DatasetError
    └── CompressionCancelled     the cancel token fired; not a failure
"""

from __future__ import annotations


class LayerfuseError(Exception):
    """Base class of every error the library raises on purpose."""

    code = "compression_failed"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "param": self.param}


class InvalidInputError(LayerfuseError):
    """The input cannot be used as given; retrying the same input fails the same way."""

    code = "invalid_input"


class ModelError(InvalidInputError):
    code = "model_invalid"


class DatasetError(InvalidInputError):
    code = "dataset_invalid"


class CompressionCancelled(LayerfuseError):
    """Raised between batches once the cancel token reports cancellation."""

    code = "cancelled"

    def __init__(self, message: str = "the job was cancelled"):
        super().__init__(message)
