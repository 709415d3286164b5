"""Every error code layerfuse gives, with the HTTP status the API answers it with and its meaning.

One registry for the library (its errors' ``code``), the service (the status of each problem it
answers) and the documentation (docs/service.md's error table is :func:`markdown_table`; a test
keeps them equal, and another that every code the source raises is listed here).

``status`` is None for codes that only end a job (the job's ``error.code``) or an integration
(``result.integrations[].error.code``): the API never answers them. The library's input errors
(422) can be both: the API checks what it can when a job is created; the rest ends the job.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int | None
    meaning: str
    # Where a code without an HTTP status appears: a failed job's error, or an integration's.
    ends: str = "failed job"


_ENTRIES = (
    # Requests
    ErrorCode("bad_request", 400, "the request could not be read (e.g. a body that is not JSON)"),
    ErrorCode("missing_api_key", 401, "no `Authorization: Bearer <key>` header"),
    ErrorCode("invalid_api_key", 401, "the API key is not one of the server's keys"),
    ErrorCode("not_found", 404, "no such route, or no such id for this tenant"),
    ErrorCode("artifact_not_found", 404, "the job has no artifact of that name"),
    ErrorCode("method_not_allowed", 405, "the route does not take this method (see `Allow`)"),
    ErrorCode("request_timeout", 408, "the request body arrived too slowly"),
    ErrorCode("idempotency_key_reused", 409, "an `Idempotency-Key` reused with another body"),
    ErrorCode("resource_in_use", 409, "the model or dataset is used by an unfinished job"),
    ErrorCode("job_not_succeeded", 409, "reports and artifacts exist once a job succeeded"),
    ErrorCode("request_too_large", 413, "a JSON body larger than the server's limit"),
    ErrorCode("upload_too_large", 413, "an upload larger than the server's limit"),
    ErrorCode("range_not_satisfiable", 416, "a `Range` that starts past the artifact's end"),
    ErrorCode("invalid_request", 422, "a field is missing, of the wrong type or out of bounds"),
    ErrorCode("invalid_upload", 422, "not multipart, no file, or a file repeated"),
    ErrorCode("upload_incomplete", 422, "the client disconnected before the upload ended"),
    ErrorCode("upload_file_not_allowed", 422, "a file name outside the allowlist, or a pickle"),
    ErrorCode("internal_error", 500, "an unexpected error; quote the `request_id`"),
    ErrorCode("broker_unavailable", 503, "the job queue is unreachable; no job was created"),
    ErrorCode("service_busy", 503, "every database connection is busy; retry after `Retry-After`"),
    # Models
    ErrorCode("model_not_found", 422, "no such model (or it was deleted)"),
    ErrorCode("model_source_disabled", 422, "this server does not take models from that source"),
    ErrorCode("model_path_invalid", 422, "`model.path` is not a model below the models root"),
    ErrorCode("model_config_missing", 422, "the model has no config.json"),
    ErrorCode("model_config_invalid", 422, "config.json is malformed or a number is out of bounds"),
    ErrorCode("model_architecture_unsupported", 422, "no adapter for this `model_type`"),
    ErrorCode("model_too_shallow", 422, "fewer than 2 layers: nothing to remove"),
    ErrorCode("model_pickle_refused", 422, "only pickle weights: they are never loaded"),
    ErrorCode("model_weights_missing", 422, "no model.safetensors (or a shard of the index)"),
    ErrorCode("model_weights_invalid", 422, "a safetensors file is truncated or malformed"),
    ErrorCode(
        "model_weights_mismatch", 422, "config.json disagrees with the weights' layers or shapes"
    ),
    ErrorCode("model_tokenizer_missing", 422, "the model has no tokenizer file"),
    ErrorCode("model_tokenizer_invalid", 422, "the tokenizer files cannot be loaded"),
    ErrorCode("model_head_missing", 422, "no classification head, and fine-tuning one is off"),
    # Datasets
    ErrorCode("dataset_not_found", 422, "no such dataset (or it was deleted)"),
    ErrorCode("dataset_format_unsupported", 422, "not JSONL, CSV, TSV or Parquet"),
    ErrorCode("dataset_parse_error", 422, "the file cannot be parsed (the message names the line)"),
    ErrorCode("dataset_empty", 422, "the file has no rows"),
    ErrorCode("dataset_too_large", 422, "more rows than the server's limit"),
    ErrorCode("dataset_column_missing", 422, "the text or text-pair column is not in the file"),
    ErrorCode("dataset_label_column_missing", 422, "the label column is not in the file"),
    ErrorCode("dataset_invalid_label", 422, "a row has no usable label"),
    ErrorCode("dataset_too_few_classes", 422, "train has fewer than 2 distinct labels"),
    ErrorCode("dataset_labels_mismatch", 422, "train has labels the model's head does not have"),
    ErrorCode("dataset_unseen_labels", 422, "validation or test has labels that train lacks"),
    ErrorCode("dataset_empty_text", 422, "a row's text is empty"),
    ErrorCode("dataset_text_not_text", 422, "a text field is not a string"),
    ErrorCode("dataset_too_few_examples", 422, "too few rows to carve out a validation split"),
    # The method
    ErrorCode("target_out_of_range", 422, "the target asks for more layers than the model has"),
    ErrorCode("options_out_of_range", 422, "an option does not fit the model or the data"),
    ErrorCode("invalid_input", 422, "the input cannot be used as given"),
    ErrorCode("model_invalid", 422, "the model cannot be used as given"),
    ErrorCode("dataset_invalid", 422, "the dataset cannot be used as given"),
    # Outbound URLs
    ErrorCode("webhook_secret_missing", 422, "a webhook, but no signing secret for the tenant"),
    ErrorCode("webhook_url_invalid", 422, "the webhook URL is not http(s) without credentials"),
    ErrorCode("webhook_url_unresolvable", 422, "the webhook host does not resolve"),
    ErrorCode("webhook_url_forbidden", 422, "the webhook host is private, loopback or metadata"),
    ErrorCode("mlflow_tracking_uri_invalid", 422, "the tracking URI is not http(s)"),
    ErrorCode("mlflow_tracking_uri_unresolvable", 422, "the tracking URI's host does not resolve"),
    ErrorCode("mlflow_tracking_uri_forbidden", 422, "a private address, or `file:` when off"),
    # Failed jobs
    ErrorCode("compression_failed", None, "the library stopped the run"),
    ErrorCode("export_failed", None, "the exported model does not reload as it was saved"),
    ErrorCode("export_onnx_unavailable", None, "ONNX asked for, but the worker lacks the extra"),
    ErrorCode("export_onnx_mismatch", None, "the ONNX file's logits differ from PyTorch's"),
    ErrorCode("vocabulary_unsupported", None, "vocabulary trimming needs a fast tokenizer"),
    ErrorCode("job_time_limit_exceeded", None, "the job ran past the server's time limit"),
    ErrorCode("job_memory_limit_exceeded", None, "the job needed more memory than its budget"),
    ErrorCode("worker_lost", None, "the job's worker died on every attempt"),
    ErrorCode("device_unavailable", None, "a CUDA job reached a machine or worker without a GPU"),
    ErrorCode("cancelled", None, "the job was cancelled (its status, not a failure)"),
    # The library and command line only (the service chooses its own output folders)
    ErrorCode("output_invalid", None, "the output folder is a file, or lies below one", "library"),
    # Integrations (result.integrations[].error)
    ErrorCode("mlflow_unavailable", None, "the worker has no `mlflow` extra", "integration"),
    ErrorCode("mlflow_failed", None, "MLflow refused or did not answer", "integration"),
    ErrorCode(
        "mlflow_artifact_store_unsupported",
        None,
        "the MLflow server does not proxy artifacts",
        "integration",
    ),
)

ERROR_CODES: dict[str, ErrorCode] = {entry.code: entry for entry in _ENTRIES}
assert len(ERROR_CODES) == len(_ENTRIES), "an error code is listed twice"


def status_of(code: str, default: int) -> int:
    """The HTTP status the API answers ``code`` with; ``default`` for job-only codes."""
    entry = ERROR_CODES.get(code)
    return entry.status if entry is not None and entry.status is not None else default


def markdown_table() -> str:
    """The registry as docs/service.md shows it."""
    lines = ["| code | HTTP status | meaning |", "|---|---|---|"]
    for entry in _ENTRIES:
        status = str(entry.status) if entry.status is not None else entry.ends
        lines.append(f"| `{entry.code}` | {status} | {entry.meaning} |")
    return "\n".join(lines)
