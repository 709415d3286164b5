from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import make_model_dir, synthetic_rows, write_jsonl

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer BERT classifier whose head already matches the synthetic labels."""
    return make_model_dir(tmp_path_factory.mktemp("models") / "bert-cls", num_labels=3)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer bare BERT encoder: no head, so a run must fine-tune a teacher first."""
    return make_model_dir(tmp_path_factory.mktemp("models") / "bert-enc", num_labels=None)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {
        "train": write_jsonl(root / "train.jsonl", synthetic_rows(240, seed=1)),
        "validation": write_jsonl(root / "validation.jsonl", synthetic_rows(60, seed=2)),
        "test": write_jsonl(root / "test.jsonl", synthetic_rows(60, seed=3)),
    }
