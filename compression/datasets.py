"""Reading and validating text-classification datasets (JSONL, CSV, TSV, Parquet).

Torch-free on purpose: the service imports this module to check uploads (:func:`inspect_table`)
and job specs (:func:`validate_columns`) with the same rules the library applies when it runs
(:func:`read_split`, :func:`prepare_data`).

Every problem is a :class:`~layerfuse.compression.errors.DatasetError` with a stable ``code``; its
message names the file by its base name (never a server path), the column, and what to do about it.
Row numbers in messages are 1-based: the line number for JSONL, the data row (after the header)
for CSV/TSV/Parquet.

Error codes (``param`` in brackets; ``dataset.<split>`` is ``dataset.train``, ...):

- ``dataset_not_found``, ``dataset_format_unsupported``, ``dataset_parse_error``,
  ``dataset_empty``, ``dataset_too_large`` [``dataset.<split>``; none from :func:`inspect_table`]
- ``dataset_column_missing`` [``dataset.text_column`` / ``dataset.text_pair_column``]
- ``dataset_label_column_missing``, ``dataset_invalid_label`` (a row without a usable label),
  ``dataset_too_few_classes``, ``dataset_labels_mismatch`` [``dataset.label_column``]
- ``dataset_empty_text``, ``dataset_text_not_text`` [the text or text pair column's field]
- ``dataset_unseen_labels`` [``dataset.validation`` / ``dataset.test``]
- ``dataset_too_few_examples`` (no validation split can be carved) [``dataset.validation``]
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DatasetError
from .jsontext import lone_surrogate

SUPPORTED_FORMATS = ("jsonl", "csv", "tsv", "parquet")
DEFAULT_MAX_ROWS = 2_000_000

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
# The file names a dataset upload may have (the service checks names with it before storing).
DATASET_SUFFIXES = tuple(_EXTENSIONS)
_MAX_LISTED = 5


@dataclass(frozen=True)
class TableInfo:
    """What an upload holds: its format, number of data rows and column names."""

    format: str
    rows: int
    columns: list[str]


@dataclass(frozen=True)
class SplitInfo(TableInfo):
    """A split checked against a job's columns: the table, and how many rows hold each label."""

    label_counts: dict[str, int]

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(self.label_counts)


@dataclass(frozen=True)
class TextSplit:
    """One split's texts and labels, aligned by position.

    ``labels`` are always strings: integers and booleans in the file become their ``str``
    (``0`` -> ``"0"``), so a label reads the same whichever format it came from.
    ``source`` is the base name of the file it was read from (``None`` when built in memory),
    ``columns`` the file's column names (all of them, used or not).
    """

    texts: list[str]
    text_pairs: list[str] | None
    labels: list[str]
    name: str
    source: str | None = None
    columns: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class LabelledData:
    """The splits a run uses, with the class names whose order defines the label ids."""

    labels: list[str]
    train: TextSplit
    validation: TextSplit
    test: TextSplit | None
    validation_carved: bool

    def label_ids(self, split: TextSplit) -> list[int]:
        """The label id of every example of ``split``, in order."""
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = [label for label in dict.fromkeys(split.labels) if label not in index]
        if unknown:
            raise DatasetError(
                f"{_describe(split)} has labels the model does not know: {_quote_some(unknown)}",
                code="dataset_unseen_labels",
                param=f"dataset.{split.name}",
            )
        return [index[label] for label in split.labels]


def detect_format(path: Path) -> str:
    """The format of ``path``, from its extension (``.json`` is read as JSON lines).

    Raises:
        DatasetError: ``dataset_format_unsupported`` for any other extension.
    """
    return _detect_format(Path(path), param=None)


def _detect_format(path: Path, *, param: str | None) -> str:
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(
            f"{path.name} has an unsupported format ({path.suffix or 'no extension'}); "
            "upload JSON lines (.jsonl), CSV (.csv), TSV (.tsv) or Parquet (.parquet)",
            code="dataset_format_unsupported",
            param=param,
        )
    return fmt


def inspect_table(path: Path, *, max_rows: int = DEFAULT_MAX_ROWS) -> TableInfo:
    """Parse ``path`` fully and describe it: format, data rows, columns.

    For JSONL the columns are the union of the objects' keys, in order of first appearance.

    Raises:
        DatasetError: the file is missing, of an unsupported format, malformed, empty or has
            more than ``max_rows`` rows.
    """
    table = _load(Path(path), columns=None, max_rows=max_rows, param=None)
    return TableInfo(format=table.format, rows=table.rows, columns=table.names)


def read_split(
    path: Path,
    *,
    name: str,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> TextSplit:
    """Read one split (``name``: ``train``, ``validation`` or ``test``) and validate it.

    Checks that the columns exist, that every text (and text pair) is a non-empty string and
    that every row has a label.

    Raises:
        DatasetError: with one of the codes listed in the module docstring of
            :mod:`layerfuse.compression.datasets`; ``param`` names the offending spec field.
    """
    split, _ = _read_split(
        Path(path),
        name=name,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        max_rows=max_rows,
    )
    return split


def validate_columns(
    path: Path,
    *,
    split: str,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    require_two_classes: bool = False,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> SplitInfo:
    """Check a split against a job's column spec, as the API does when a job is created.

    The same checks as :func:`read_split`, plus (``require_two_classes``, for train) at least two
    distinct labels. The labels it returns let the caller check the other splits against train
    (:func:`check_labels_seen`).

    Raises:
        DatasetError: as :func:`read_split`, or ``dataset_too_few_classes``.
    """
    data, info = _read_split(
        Path(path),
        name=split,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        max_rows=max_rows,
    )
    if require_two_classes:
        _require_two_classes(data, label_column=label_column)
    return SplitInfo(info.format, info.rows, info.columns, dict(Counter(data.labels)))


def prepare_data(
    train: TextSplit,
    validation: TextSplit | None,
    test: TextSplit | None,
    *,
    seed: int,
    validation_fraction: float = 0.1,
    label_order: list[str] | None = None,
) -> LabelledData:
    """Fix the class list and the splits a run uses.

    Without a validation split, a stratified ``validation_fraction`` of train is carved out with
    ``seed`` (every class keeps at least one training example; a class with a single example
    stays in train). The class order is ``label_order`` when given (the labels of the model's
    existing head), otherwise sorted: numerically when every label is an integer, else
    lexicographically.

    Raises:
        DatasetError: ``dataset_too_few_classes``, ``dataset_labels_mismatch`` (a train label
            is not in ``label_order``), ``dataset_unseen_labels`` (a validation or test label
            never occurs in train) or ``dataset_too_few_examples`` (no validation can be carved,
            or train holds one example of every class).
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    _require_two_classes(train, label_column=None)
    train_labels = set(train.labels)

    if label_order is not None:
        missing = sorted(train_labels - set(label_order), key=_label_sort_key(train_labels))
        if missing:
            raise DatasetError(
                f"{_describe(train)} has labels the model's classification head does not have: "
                f"{_quote_some(missing)} (the model's labels: {_quote_some(label_order)}); "
                "relabel the data to the model's labels or start from a model without a head",
                code="dataset_labels_mismatch",
                param="dataset.label_column",
            )
        labels = list(label_order)
    else:
        labels = sort_labels(train_labels)

    carved = validation is None
    check_train_size(
        Counter(train.labels), carve=carved, fraction=validation_fraction, where=_describe(train)
    )
    if validation is None:
        train, validation = _carve_validation(train, fraction=validation_fraction, seed=seed)
    for split in (validation, test):
        if split is not None:
            check_labels_seen(split.labels, train_labels, split=split.name, where=_describe(split))
    return LabelledData(
        labels=labels, train=train, validation=validation, test=test, validation_carved=carved
    )


def check_train_size(
    counts: Mapping[str, int], *, carve: bool, fraction: float, where: str = "the train split"
) -> None:
    """Train (``counts`` per label) is large enough: validation can be carved from it when
    ``carve``, and some class keeps two examples (the mutual-information signal's estimator
    leaves out classes of one; with none left it failed in the sweep, after the baseline).

    Raises:
        DatasetError: ``dataset_too_few_examples``.
    """
    remaining = dict(counts)
    if carve:
        taken = _carve_sizes(counts, fraction)
        if not any(taken.values()):
            raise DatasetError(
                f"{where} is too small to carve a validation split from (every class has a "
                "single example); upload a validation split or more training data",
                code="dataset_too_few_examples",
                param="dataset.validation",
            )
        remaining = {label: n - taken[label] for label, n in counts.items()}
    if max(remaining.values()) < 2:
        raise DatasetError(
            f"{where} has a single example of every class"
            f"{' once validation is carved from it' if carve else ''}; the signals need two "
            "examples of some class: add training data",
            code="dataset_too_few_examples",
            param="dataset.train",
        )


def check_labels_seen(
    labels: Iterable[str], train_labels: Iterable[str], *, split: str, where: str | None = None
) -> None:
    """Every label of a validation or test split occurs in train.

    Raises:
        DatasetError: ``dataset_unseen_labels`` naming ``dataset.<split>``.
    """
    seen = set(train_labels)
    unseen = [label for label in dict.fromkeys(labels) if label not in seen]
    if unseen:
        raise DatasetError(
            f"{where or f'the {split} split'} has labels that never occur in train: "
            f"{_quote_some(unseen)}; every label must have training examples, so fix or drop "
            "those rows",
            code="dataset_unseen_labels",
            param=f"dataset.{split}",
        )


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Labels in id order: numerically if all are integers ("2" < "10"), else lexicographically."""
    unique = set(labels)
    return sorted(unique, key=_label_sort_key(unique))


# --- reading -------------------------------------------------------------------------------------


@dataclass
class _Table:
    """A parsed file: column names, row count and the values of the requested columns."""

    format: str
    file: str
    names: list[str]
    rows: int
    values: dict[str, list[Any]]
    row_numbers: list[int] | None  # None: rows are numbered 1..rows

    @property
    def unit(self) -> str:
        return "line" if self.format == "jsonl" else "row"

    def number(self, index: int) -> int:
        return self.row_numbers[index] if self.row_numbers is not None else index + 1


def _read_split(
    path: Path,
    *,
    name: str,
    text_column: str,
    text_pair_column: str | None,
    label_column: str,
    max_rows: int,
) -> tuple[TextSplit, TableInfo]:
    wanted = [text_column, label_column] + ([text_pair_column] if text_pair_column else [])
    table = _load(path, columns=wanted, max_rows=max_rows, param=f"dataset.{name}")

    _require_column(table, text_column, "text_column", code="dataset_column_missing")
    if text_pair_column:
        _require_column(table, text_pair_column, "text_pair_column", code="dataset_column_missing")
    _require_column(table, label_column, "label_column", code="dataset_label_column_missing")

    texts = _texts(table, text_column, "text_column")
    pairs = _texts(table, text_pair_column, "text_pair_column") if text_pair_column else None
    labels = _labels(table, label_column)
    split = TextSplit(
        texts=texts,
        text_pairs=pairs,
        labels=labels,
        name=name,
        source=table.file,
        columns=tuple(table.names),
    )
    return split, TableInfo(format=table.format, rows=table.rows, columns=table.names)


def _load(path: Path, *, columns: list[str] | None, max_rows: int, param: str | None) -> _Table:
    fmt = _detect_format(path, param=param)
    if not path.is_file():
        raise DatasetError(
            f"{path.name} does not exist; upload it again or check the dataset id",
            code="dataset_not_found",
            param=param,
        )
    readers: dict[str, Callable[..., _Table]] = {
        "jsonl": _load_jsonl,
        "csv": _load_delimited,
        "tsv": _load_delimited,
        "parquet": _load_parquet,
    }
    table = readers[fmt](path, fmt=fmt, columns=columns, max_rows=max_rows, param=param)
    if table.rows == 0:
        raise DatasetError(
            f"{path.name} has no data rows; it needs a header row (CSV/TSV) and at least one "
            "example per line",
            code="dataset_empty",
            param=param,
        )
    return table


def _too_large(path: Path, max_rows: int, param: str | None) -> DatasetError:
    return DatasetError(
        f"{path.name} has more than {max_rows:,} rows, the most this server accepts; "
        "upload a sample of it",
        code="dataset_too_large",
        param=param,
    )


def _parse_error(path: Path, detail: str, param: str | None) -> DatasetError:
    return DatasetError(
        f"{path.name} cannot be parsed: {detail}", code="dataset_parse_error", param=param
    )


def _jsonl_objects(path: Path, param: str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; decoding and JSON errors name the line."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _parse_error(
                    path, f"line {number} is not valid UTF-8; save the file as UTF-8", param
                ) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                hint = (
                    " (the file holds one JSON array; write one JSON object per line instead)"
                    if number == 1 and line.lstrip().startswith("[")
                    else ""
                )
                raise _parse_error(
                    path, f"line {number} is not valid JSON ({e.msg}){hint}", param
                ) from None
            except RecursionError:
                # json recurses per nesting level; a row is a flat object, so this is never data.
                raise _parse_error(
                    path, f"line {number} nests too deeply to be a row of a dataset", param
                ) from None
            if lone_surrogate(obj, line) is not None:
                raise _parse_error(
                    path,
                    f"line {number} holds a \\ud800-\\udfff escape without its pair, which is "
                    "not text; write the file as UTF-8 or escape whole characters",
                    param,
                )
            if not isinstance(obj, dict):
                raise _parse_error(
                    path,
                    f"line {number} is a JSON {type(obj).__name__}, not an object; write one "
                    'object per line, e.g. {"text": "...", "label": "..."}',
                    param,
                )
            yield number, obj


def _load_jsonl(
    path: Path, *, fmt: str, columns: list[str] | None, max_rows: int, param: str | None
) -> _Table:
    names: dict[str, None] = {}
    values: dict[str, list[Any]] = {c: [] for c in columns or []}
    numbers: list[int] = []
    for number, obj in _jsonl_objects(path, param):
        if len(numbers) >= max_rows:
            raise _too_large(path, max_rows, param)
        numbers.append(number)
        names.update(dict.fromkeys(obj))
        for column, col_values in values.items():
            col_values.append(obj.get(column))
    return _Table(fmt, path.name, list(names), len(numbers), values, numbers)


def _load_delimited(
    path: Path, *, fmt: str, columns: list[str] | None, max_rows: int, param: str | None
) -> _Table:
    import warnings

    import pandas as pd

    sep = "\t" if fmt == "tsv" else ","

    def read(quoting: int) -> Any:
        with warnings.catch_warnings():
            # With index_col=False pandas only warns when a row has more fields than the header.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(
                path,
                sep=sep,
                dtype=str,
                keep_default_na=False,
                encoding="utf-8-sig",
                quoting=quoting,
                index_col=False,
                nrows=max_rows + 1,
            )

    try:
        try:
            frame = read(csv.QUOTE_MINIMAL)
        except pd.errors.ParserError:
            if fmt != "tsv":
                raise
            # Many TSVs (GLUE MRPC, CoLA) use no quoting at all and have stray quote characters.
            frame = read(csv.QUOTE_NONE)
        else:
            if fmt == "tsv" and _has_line_breaks(frame) and _unquoted_is_regular(path, sep):
                # A stray opening quote swallowed the lines up to the next quote character.
                frame = read(csv.QUOTE_NONE)
    except pd.errors.EmptyDataError:
        return _Table(fmt, path.name, [], 0, {}, None)
    except pd.errors.ParserError as e:
        detail = str(e).strip().replace("Error tokenizing data. C error: ", "")
        raise _parse_error(path, f"{detail} (file line numbers count the header)", param) from None
    except pd.errors.ParserWarning:
        raise _parse_error(path, "a row has more fields than the header", param) from None
    except UnicodeDecodeError as e:
        raise _parse_error(
            path, f"byte {e.start} is not valid UTF-8; save the file as UTF-8", param
        ) from None
    if len(frame) > max_rows:
        raise _too_large(path, max_rows, param)
    names = [str(c) for c in frame.columns]
    values = {
        c: [_none_if_nan(v) for v in frame[c].tolist()] for c in columns or [] if c in frame.columns
    }
    return _Table(fmt, path.name, names, len(frame), values, None)


def _has_line_breaks(frame: Any) -> bool:
    return any(frame[c].astype(str).str.contains("\n", regex=False).any() for c in frame.columns)


def _unquoted_is_regular(path: Path, sep: str) -> bool:
    """Whether every non-blank line has as many separators as the header (no quoting needed)."""
    lines = [line for line in path.read_text(encoding="utf-8-sig").split("\n") if line.strip()]
    return all(line.count(sep) == lines[0].count(sep) for line in lines)


def _load_parquet(
    path: Path, *, fmt: str, columns: list[str] | None, max_rows: int, param: str | None
) -> _Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        rows = parquet.metadata.num_rows
        if rows > max_rows:
            raise _too_large(path, max_rows, param)
        names = list(parquet.schema_arrow.names)
        wanted = [c for c in columns if c in names] if columns is not None else None
        table = parquet.read(columns=wanted)
    except (pa.ArrowException, OSError) as e:
        raise _parse_error(path, f"not a readable Parquet file ({e})", param) from None
    values = {c: table.column(c).to_pylist() for c in (wanted or [])}
    return _Table(fmt, path.name, names, rows, values, None)


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


# --- validating ----------------------------------------------------------------------------------


def _require_column(table: _Table, column: str, field: str, *, code: str) -> None:
    if column in table.names:
        return
    listed = ", ".join(_short(n) for n in table.names[:20]) if table.names else "none"
    if len(table.names) > 20:
        listed += f" and {len(table.names) - 20} more"
    hint = ""
    if table.format in ("csv", "tsv"):
        if len(table.names) == 1 and ("\t" in table.names[0] or "," in table.names[0]):
            other = "TSV (.tsv)" if "\t" in table.names[0] else "CSV (.csv)"
            hint = f"; the file looks like {other}, name it accordingly"
        else:
            hint = "; the first row is read as the header, so the file needs one"
    raise DatasetError(
        f"column {column!r} is not in {table.file} (columns: {listed}); "
        f"set {field} to one of those{hint}",
        code=code,
        param=f"dataset.{field}",
    )


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _texts(table: _Table, column: str, field: str) -> list[str]:
    values = table.values[column]
    param = f"dataset.{field}"
    not_text = [i for i, v in enumerate(values) if v is not None and not isinstance(v, str)]
    if not not_text and table.format in ("csv", "tsv"):
        # Every CSV cell is a string; a column of nothing but numbers is an id or label column.
        filled = [v for v in values if v and v.strip()]
        if filled and all(_is_number(v) for v in filled):
            raise DatasetError(
                f"column {column!r} in {table.file} holds numbers, not text "
                f"(e.g. {filled[0]!r}); set {field} to the column with the texts",
                code="dataset_text_not_text",
                param=param,
            )
    if not_text:
        first = not_text[0]
        raise DatasetError(
            f"column {column!r} in {table.file} has {len(not_text)} value(s) that are not text "
            f"(first at {table.unit} {table.number(first)}: {values[first]!r}, a "
            f"{type(values[first]).__name__}); set {field} to the column with the texts or "
            "store them as strings",
            code="dataset_text_not_text",
            param=param,
        )
    empty = [i for i, v in enumerate(values) if v is None or not v.strip()]
    if empty:
        raise DatasetError(
            f"column {column!r} in {table.file} has {len(empty)} empty text(s) "
            f"(first at {table.unit} {table.number(empty[0])}); remove those rows or fill them in",
            code="dataset_empty_text",
            param=param,
        )
    return list(values)


def _label_text(value: Any) -> str | None:
    """A label as text; ``None`` when the value cannot be a label (null, blank, list...)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def _labels(table: _Table, column: str) -> list[str]:
    values = table.values[column]
    labels = [_label_text(v) for v in values]
    bad = [i for i, label in enumerate(labels) if label is None]
    if bad:
        first = bad[0]
        raise DatasetError(
            f"column {column!r} in {table.file} has {len(bad)} row(s) without a usable label "
            f"(first at {table.unit} {table.number(first)}: {values[first]!r}); every row needs "
            "a label that is a string or an integer",
            code="dataset_invalid_label",
            param="dataset.label_column",
        )
    return [label for label in labels if label is not None]


def _require_two_classes(split: TextSplit, *, label_column: str | None) -> None:
    counts = Counter(split.labels)
    if len(counts) >= 2:
        return
    column = f" in column {label_column!r}" if label_column else ""
    found = f"only {next(iter(counts))!r}" if counts else "none"
    raise DatasetError(
        f"{_describe(split)} has fewer than two classes{column} (found {found}); a classifier "
        "needs examples of at least two labels, so check label_column or add examples",
        code="dataset_too_few_classes",
        param="dataset.label_column",
    )


# --- preparing -----------------------------------------------------------------------------------


def _label_sort_key(labels: set[str]) -> Callable[[str], Any]:
    try:
        for label in labels:
            int(label)
    except ValueError:
        return str
    return int


def _carve_validation(
    train: TextSplit, *, fraction: float, seed: int
) -> tuple[TextSplit, TextSplit]:
    """Split a stratified ``fraction`` of ``train`` off as validation, deterministically."""
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(train.labels):
        by_class.setdefault(label, []).append(i)
    taken = _carve_sizes({label: len(members) for label, members in by_class.items()}, fraction)
    chosen: list[int] = []
    for label in sort_labels(by_class):
        if taken[label]:
            chosen.extend(rng.sample(by_class[label], taken[label]))
    held_out = set(chosen)
    keep = [i for i in range(len(train)) if i not in held_out]
    val = sorted(held_out)
    return _subset(train, keep, name="train"), _subset(train, val, name="validation")


def _carve_sizes(counts: Mapping[str, int], fraction: float) -> dict[str, int]:
    """How many examples of each class carving moves to validation: a stratified ``fraction``,
    every class keeping one in train; on tiny data one, from the largest class; else none."""
    taken = {label: min(round(fraction * n), n - 1) for label, n in counts.items()}
    if not any(taken.values()):
        largest = max(sort_labels(counts), key=lambda label: counts[label])
        if counts[largest] > 1:
            taken[largest] = 1
    return taken


def _subset(split: TextSplit, indices: list[int], *, name: str) -> TextSplit:
    return TextSplit(
        texts=[split.texts[i] for i in indices],
        text_pairs=[split.text_pairs[i] for i in indices] if split.text_pairs is not None else None,
        labels=[split.labels[i] for i in indices],
        name=name,
        source=split.source,
        columns=split.columns,
    )


def _describe(split: TextSplit) -> str:
    return f"the {split.name} split{_source_suffix(split)}"


def _source_suffix(split: TextSplit) -> str:
    return f" ({split.source})" if split.source else ""


def _quote_some(items: Sequence[str]) -> str:
    shown = ", ".join(repr(item) for item in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown
