from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from layerfuse.compression.datasets import (
    SUPPORTED_FORMATS,
    LabelledData,
    TableInfo,
    TextSplit,
    detect_format,
    inspect_table,
    prepare_data,
    read_split,
    validate_columns,
)
from layerfuse.compression.errors import DatasetError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared datasets not found at {SHARED}"
)

# Awkward but legal content every format must carry through unchanged.
ROWS = [
    {"text": "plain words", "text_pair": "a pair", "label": "pos"},
    {"text": 'quotes "inside", and a comma', "text_pair": "b", "label": "neg"},
    {"text": "NA", "text_pair": "null", "label": "pos"},
    {"text": "ünïcödé ✓ text", "text_pair": "tab\tinside", "label": "neu"},
    {"text": "  leading space kept", "text_pair": "c", "label": "neg"},
]


def write_rows(path: Path, rows: list[dict]) -> Path:
    fmt = path.suffix.lstrip(".")
    if fmt in ("jsonl", "json"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif fmt == "tsv":
        pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    elif fmt == "parquet":
        pd.DataFrame(rows).to_parquet(path, index=False)
    else:
        path.write_text("whatever")
    return path


def raises(code: str, fn, *args, **kwargs) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


def assert_names_file_only(err: DatasetError, path: Path) -> None:
    assert path.name in err.message
    assert str(path.parent) not in err.message


def split(labels: list[str], name: str = "train", pairs: bool = False) -> TextSplit:
    texts = [f"text {i}" for i in range(len(labels))]
    return TextSplit(
        texts=texts,
        text_pairs=[f"pair {i}" for i in range(len(labels))] if pairs else None,
        labels=labels,
        name=name,
    )


# --- formats -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.json", "jsonl"),
        ("A.CSV", "csv"),
        ("a.tsv", "tsv"),
        ("a.parquet", "parquet"),
    ],
)
def test_detect_format_by_extension(name: str, fmt: str) -> None:
    assert detect_format(Path(name)) == fmt
    assert fmt in SUPPORTED_FORMATS


def test_unsupported_format_names_the_file(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "train.xlsx", ROWS)
    err = raises("dataset_format_unsupported", detect_format, path)
    assert_names_file_only(err, path)
    assert ".jsonl" in err.message and ".parquet" in err.message
    err = raises("dataset_format_unsupported", read_split, path, name="train")
    assert err.param == "dataset.train"


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "parquet"])
def test_every_format_reads_the_same_rows(tmp_path: Path, fmt: str) -> None:
    path = write_rows(tmp_path / f"train.{fmt}", ROWS)

    info = inspect_table(path)
    assert info == TableInfo(format=fmt, rows=5, columns=["text", "text_pair", "label"])

    got = read_split(path, name="train", text_pair_column="text_pair")
    assert got.texts == [r["text"] for r in ROWS]
    assert got.text_pairs == [r["text_pair"] for r in ROWS]
    assert got.labels == [r["label"] for r in ROWS]
    assert got.name == "train" and len(got) == 5


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_utf8_bom_is_tolerated(tmp_path: Path, fmt: str) -> None:
    plain = write_rows(tmp_path / f"plain.{fmt}", ROWS)
    bom = tmp_path / f"bom.{fmt}"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert inspect_table(bom).columns == ["text", "text_pair", "label"]
    assert read_split(bom, name="train").texts == [r["text"] for r in ROWS]


def test_jsonl_columns_are_the_union_of_keys_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y", "id": 7}\n')
    assert inspect_table(path) == TableInfo("jsonl", 2, ["text", "label", "id"])


def test_integer_and_boolean_labels_become_strings(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    rows = [{"text": "a", "label": 0}, {"text": "b", "label": 10}, {"text": "c", "label": True}]
    write_rows(path, rows)
    assert read_split(path, name="train").labels == ["0", "10", "True"]
    # A Parquet integer column reads the same as the JSON integers.
    parquet = write_rows(tmp_path / "train.parquet", rows[:2])
    assert read_split(parquet, name="train").labels == ["0", "10"]


# --- errors --------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    err = raises("dataset_not_found", read_split, path, name="train")
    assert err.param == "dataset.train"
    assert_names_file_only(err, path)
    raises("dataset_not_found", inspect_table, path)


def test_bad_json_line_gives_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n')
    err = raises("dataset_parse_error", inspect_table, path)
    assert "line 3" in err.message
    assert_names_file_only(err, path)


def test_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n["b", "y"]\n')
    err = raises("dataset_parse_error", read_split, path, name="validation")
    assert "line 2" in err.message and "object" in err.message
    assert err.param == "dataset.validation"


def test_json_array_file_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text('[{"text": "a", "label": "x"},\n{"text": "b", "label": "y"}]\n')
    err = raises("dataset_parse_error", inspect_table, path)
    assert "one JSON object per line" in err.message


def test_non_utf8_bytes_are_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "a", "label": "x"}\n{"text": "caf\xe9", "label": "y"}\n')
    err = raises("dataset_parse_error", inspect_table, path)
    assert "line 2" in err.message and "UTF-8" in err.message


def test_csv_row_with_extra_fields_is_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\na,x\nb,y,surplus\n")
    err = raises("dataset_parse_error", inspect_table, path)
    assert_names_file_only(err, path)
    assert "line 3" in err.message


def test_corrupt_parquet_is_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    raises("dataset_parse_error", inspect_table, path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("train.jsonl", "\n  \n"),
        ("train.csv", "text,label\n"),
        ("train.tsv", ""),
        ("train.csv", ""),
    ],
)
def test_empty_files(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    err = raises("dataset_empty", read_split, path, name="test")
    assert err.param == "dataset.test"
    assert_names_file_only(err, path)


def test_empty_parquet(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "train.parquet", ROWS)
    pd.read_parquet(path).iloc[:0].to_parquet(path, index=False)
    raises("dataset_empty", inspect_table, path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_too_many_rows(tmp_path: Path, fmt: str) -> None:
    path = write_rows(tmp_path / f"train.{fmt}", ROWS)
    err = raises("dataset_too_large", inspect_table, path, max_rows=4)
    assert_names_file_only(err, path)
    assert "4" in err.message
    assert inspect_table(path, max_rows=5).rows == 5


def test_missing_text_column_lists_the_columns(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "train.jsonl", [{"sentence": "a", "label": "x"}])
    err = raises("dataset_column_missing", read_split, path, name="train")
    assert err.param == "dataset.text_column"
    assert err.message == (
        "column 'text' is not in train.jsonl (columns: sentence, label); "
        "set text_column to one of those"
    )


def test_missing_text_pair_column(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "train.csv", [{"text": "a", "label": "x"}])
    err = raises(
        "dataset_column_missing", read_split, path, name="train", text_pair_column="hypothesis"
    )
    assert err.param == "dataset.text_pair_column"
    assert "'hypothesis'" in err.message and "train.csv" in err.message
    assert "text, label" in err.message


def test_missing_label_column(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "train.tsv", [{"text": "a", "sentiment": "x"}])
    err = raises("dataset_label_column_missing", read_split, path, name="train")
    assert err.param == "dataset.label_column"
    assert "column 'label' is not in train.tsv (columns: text, sentiment)" in err.message
    assert "label_column" in err.message


def test_headerless_tsv_gets_a_header_hint(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("ham\tGo until jurong point\nspam\tWIN a prize\n")
    err = raises("dataset_column_missing", read_split, path, name="train")
    assert "header" in err.message


def test_csv_that_is_really_tsv_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text\tlabel\na\tx\n")
    err = raises("dataset_column_missing", read_split, path, name="train")
    assert "TSV" in err.message


def test_empty_texts_are_counted_with_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    rows = [
        {"text": "fine", "label": "x"},
        {"text": "", "label": "x"},
        {"text": "fine", "label": "y"},
        {"text": "   ", "label": "y"},
        {"text": None, "label": "x"},
        {"label": "y"},
    ]
    write_rows(path, rows)
    err = raises("dataset_empty_text", read_split, path, name="train")
    assert err.param == "dataset.text_column"
    assert "4 empty" in err.message and "line 2" in err.message
    assert "'text'" in err.message and "train.jsonl" in err.message


def test_empty_text_pair_in_csv_names_the_data_row(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("premise,hypothesis,label\na,b,x\nc,,y\n")
    err = raises(
        "dataset_empty_text",
        read_split,
        path,
        name="train",
        text_column="premise",
        text_pair_column="hypothesis",
    )
    assert err.param == "dataset.text_pair_column"
    assert "1 empty" in err.message and "row 2" in err.message and "'hypothesis'" in err.message


def test_numbers_are_not_text_in_jsonl(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "train.jsonl",
        [{"text": "ok", "label": "x"}, {"text": 42, "label": "y"}, {"text": ["a"], "label": "y"}],
    )
    err = raises("dataset_text_not_text", read_split, path, name="train")
    assert err.param == "dataset.text_column"
    assert "2 value(s)" in err.message and "line 2" in err.message and "42" in err.message
    assert "train.jsonl" in err.message


def test_numeric_csv_column_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("id,text,label\n1,hello,x\n2,world,y\n")
    err = raises("dataset_text_not_text", read_split, path, name="train", text_column="id")
    assert err.param == "dataset.text_column"
    assert "'id'" in err.message and "train.csv" in err.message


def test_parquet_integer_text_column_is_not_text(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "train.parquet", [{"text": 1, "label": "x"}])
    raises("dataset_text_not_text", read_split, path, name="train")


def test_rows_without_label(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": None}]
    )
    err = raises("dataset_invalid_label", read_split, path, name="train")
    assert err.param == "dataset.label_column"
    assert "line 2" in err.message


def test_validate_columns_requires_two_classes_in_train(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "train.csv", [{"text": "a", "y": "x"}, {"text": "b", "y": "x"}])
    info = validate_columns(
        path,
        split="validation",
        text_column="text",
        text_pair_column=None,
        label_column="y",
        require_two_classes=False,
    )
    assert (info.format, info.rows, info.columns) == ("csv", 2, ["text", "y"])
    assert info.labels == {"x"}
    err = raises(
        "dataset_too_few_classes",
        validate_columns,
        path,
        split="train",
        text_column="text",
        text_pair_column=None,
        label_column="y",
        require_two_classes=True,
    )
    assert err.param == "dataset.label_column"
    assert "train.csv" in err.message and "'y'" in err.message and "'x'" in err.message


def test_validate_columns_reports_the_same_errors_as_read_split(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "train.jsonl", [{"text": "a", "label": "x"}])
    err = raises(
        "dataset_label_column_missing",
        validate_columns,
        path,
        split="train",
        text_column="text",
        text_pair_column=None,
        label_column="gold",
        require_two_classes=True,
    )
    assert err.param == "dataset.label_column"


# --- preparing -----------------------------------------------------------------------------------


def test_prepare_rejects_a_single_class() -> None:
    err = raises("dataset_too_few_classes", prepare_data, split(["a"] * 5), None, None, seed=0)
    assert err.param == "dataset.label_column"


def test_unseen_validation_and_test_labels_are_listed() -> None:
    train = split(["a", "b"] * 5)
    validation = split(["a", "c", "d", "e", "f", "g", "h", "i"], name="validation")
    err = raises("dataset_unseen_labels", prepare_data, train, validation, None, seed=0)
    assert err.param == "dataset.validation"
    assert "'c', 'd', 'e', 'f', 'g' and 2 more" in err.message
    assert "'h'" not in err.message

    named = TextSplit(texts=["t"], text_pairs=None, labels=["z"], name="test", source="test.csv")
    err = raises("dataset_unseen_labels", prepare_data, train, None, named, seed=0)
    assert err.param == "dataset.test"
    assert "test.csv" in err.message and "'z'" in err.message


def test_integer_labels_sort_numerically() -> None:
    data = prepare_data(split(["10", "2", "1", "2", "10", "1"]), None, None, seed=0)
    assert data.labels == ["1", "2", "10"]


def test_text_labels_sort_lexicographically() -> None:
    data = prepare_data(split(["b", "10", "a", "2"] * 3), None, None, seed=0)
    assert data.labels == ["10", "2", "a", "b"]


def test_label_order_from_the_model_head_wins() -> None:
    train = split(["pos", "neg"] * 3)
    data = prepare_data(train, None, None, seed=0, label_order=["pos", "neu", "neg"])
    assert data.labels == ["pos", "neu", "neg"]
    assert data.label_ids(data.train) == [
        ["pos", "neu", "neg"].index(label) for label in data.train.labels
    ]
    err = raises(
        "dataset_labels_mismatch", prepare_data, train, None, None, seed=0, label_order=["pos"]
    )
    assert err.param == "dataset.label_column" and "'neg'" in err.message


def test_carved_validation_is_stratified_and_deterministic() -> None:
    labels = ["a"] * 600 + ["b"] * 300 + ["c"] * 100
    train = split(labels, pairs=True)
    first = prepare_data(train, None, None, seed=7)
    again = prepare_data(train, None, None, seed=7)
    other = prepare_data(train, None, None, seed=8)

    assert first.validation_carved
    assert first.validation.name == "validation" and first.train.name == "train"
    assert Counter(first.validation.labels) == {"a": 60, "b": 30, "c": 10}
    assert Counter(first.train.labels) == {"a": 540, "b": 270, "c": 90}
    assert first.validation.texts == again.validation.texts
    assert first.validation.texts != other.validation.texts
    # A partition of train, pairs kept aligned with their texts.
    assert sorted(first.train.texts + first.validation.texts) == sorted(train.texts)
    assert first.validation.text_pairs == [
        t.replace("text", "pair") for t in first.validation.texts
    ]


def test_carve_keeps_singleton_classes_in_train() -> None:
    labels = ["a"] * 30 + ["b"] * 30 + ["rare"]
    data = prepare_data(split(labels), None, None, seed=0, validation_fraction=0.2)
    assert "rare" in data.train.labels
    assert "rare" not in data.validation.labels
    assert Counter(data.validation.labels) == {"a": 6, "b": 6}


def test_train_with_one_example_of_every_class_is_refused() -> None:
    """It crashed in the sweep (the MI estimator drops one-example classes), after the baseline."""
    validation = split(["a", "b", "c"], name="validation")
    err = raises(
        "dataset_too_few_examples", prepare_data, split(["a", "b", "c"]), validation, None, seed=0
    )
    assert err.param == "dataset.train" and "single example of every class" in err.message
    # Carving validation from 4 rows leaves one of each: refused too, saying why.
    err = raises(
        "dataset_too_few_examples", prepare_data, split(["a", "a", "b", "c"]), None, None, seed=0
    )
    assert "once validation is carved" in err.message
    assert prepare_data(split(["a", "a", "b"]), split(["b"], name="validation"), None, seed=0)


def test_given_validation_is_used_as_is() -> None:
    train, validation = split(["a", "b"] * 4), split(["b", "a"], name="validation")
    data = prepare_data(train, validation, None, seed=0)
    assert isinstance(data, LabelledData)
    assert not data.validation_carved
    assert data.train is train and data.validation is validation and data.test is None
    assert data.label_ids(validation) == [1, 0]


# --- real shared datasets ------------------------------------------------------------------------


@needs_shared
def test_reads_shared_trec_jsonl() -> None:
    train = read_split(SHARED / "trec" / "train.jsonl", name="train")
    assert len(train) == 5452
    data = prepare_data(train, None, None, seed=0)
    assert data.labels == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert len(data.validation) == pytest.approx(545, abs=3)


@needs_shared
def test_reads_shared_sst2_tsv_header() -> None:
    path = SHARED / "sst2" / "dev.tsv"
    assert inspect_table(path) == TableInfo("tsv", 872, ["sentence", "label"])
    dev = read_split(path, name="validation", text_column="sentence")
    assert Counter(dev.labels) == {"0": 428, "1": 444}


@needs_shared
def test_reads_shared_rte_tsv_with_quoted_fields() -> None:
    tsv = read_split(
        SHARED / "rte" / "dev.tsv",
        name="test",
        text_column="sentence1",
        text_pair_column="sentence2",
    )
    jsonl = read_split(SHARED / "rte" / "test.jsonl", name="test", text_pair_column="text_pair")
    assert len(tsv) == 277
    assert any('"' in t for t in tsv.texts)

    def collapse(texts: list[str] | None) -> list[str]:
        return [" ".join(t.split()) for t in texts or []]

    # CSV quoting is undone: the texts equal the uniform JSONL export of the same rows (whose
    # whitespace is collapsed).
    assert collapse(tsv.texts) == jsonl.texts
    assert collapse(tsv.text_pairs) == jsonl.text_pairs


@needs_shared
def test_reads_shared_mrpc_tsv_with_stray_quotes() -> None:
    path = SHARED / "mrpc" / "train.tsv"
    assert inspect_table(path).rows == 3668
    pairs = read_split(
        path,
        name="train",
        text_column="#1 String",
        text_pair_column="#2 String",
        label_column="Quality",
    )
    assert Counter(pairs.labels) == {"0": 1194, "1": 2474}


def test_module_imports_without_torch() -> None:
    # The API service validates uploads with this module and must not load torch.
    code = (
        "import sys, layerfuse.compression.datasets; "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "sys.exit(f'imported {heavy}' if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
