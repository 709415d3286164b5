"""The MLflow pyfunc model of a compressed classifier (MLflow "models from code").

MLflow copies this file into every model the worker logs and runs it at load time, so it depends
on mlflow, transformers, torch and pandas only, never on layerfuse, and nothing is pickled. The
Hugging Face directory travels as the model's ``model`` artifact; ``model_config`` carries the
column names and ``max_length`` the job used.

    model = mlflow.pyfunc.load_model("models:/name/1")
    model.predict(pd.DataFrame({"text": ["great movie", "awful plot"]}))
    # -> DataFrame: label, score, then one probability column per label ("p_<label>")
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

BATCH_SIZE = 64


class SequenceClassifier(PythonModel):
    def load_context(self, context: Any) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = context.artifacts["model"]
        config = context.model_config or {}
        self.text_column = config.get("text_column", "text")
        self.text_pair_column = config.get("text_pair_column")
        self.max_length = int(config.get("max_length", 128))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True
        ).eval()
        labels = self.model.config.id2label
        self.labels = [str(labels[i]) for i in range(self.model.config.num_labels)]

    # No type hints: MLflow would try to validate inputs from them (the signature does that).
    def predict(self, context, model_input, params=None):
        import torch

        frame = self._frame(model_input)
        texts = frame[self.text_column].astype(str).tolist()
        pairs = None
        if self.text_pair_column and self.text_pair_column in frame:
            pairs = frame[self.text_pair_column].astype(str).tolist()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH_SIZE):
                inputs = self.tokenizer(
                    texts[start : start + BATCH_SIZE],
                    pairs[start : start + BATCH_SIZE] if pairs else None,
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                chunks.append(self.model(**inputs).logits.float().softmax(-1))
        probabilities = (
            torch.cat(chunks).numpy() if chunks else torch.zeros(0, len(self.labels)).numpy()
        )
        best = probabilities.argmax(-1) if len(probabilities) else []
        result = pd.DataFrame(
            {
                "label": [self.labels[int(i)] for i in best],
                "score": probabilities.max(-1) if len(probabilities) else [],
            }
        )
        for index, label in enumerate(self.labels):
            result[f"p_{label}"] = probabilities[:, index]
        return result

    def _frame(self, model_input: Any) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            if self.text_column not in model_input and len(model_input.columns) == 1:
                return model_input.set_axis([self.text_column], axis=1)
            return model_input
        if isinstance(model_input, pd.Series):
            return model_input.to_frame(self.text_column)
        if isinstance(model_input, str):
            model_input = [model_input]
        return pd.DataFrame({self.text_column: list(model_input)})


mlflow.models.set_model(SequenceClassifier())
