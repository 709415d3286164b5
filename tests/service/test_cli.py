"""The service's command line, where it can be checked without servers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from layerfuse.cli import build_parser
from layerfuse.client import _extract_model
from layerfuse.commands.processes import _local_key

REPO = Path(__file__).resolve().parents[2]


def test_serve_refuses_placeholder_keys(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LAYERFUSE_DATA_DIR": str(tmp_path),
        "LAYERFUSE_API_KEYS": "acme:changeme",
        "LAYERFUSE_ENV": "production",
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "layerfuse.cli", "serve", "--port", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "placeholder" in result.stderr and "changeme" not in result.stderr


def test_the_up_key_is_generated_once_and_private(tmp_path: Path) -> None:
    key = _local_key(tmp_path)
    assert key.startswith("lf_") and len(key) > 40
    assert stat.S_IMODE((tmp_path / "api_key").stat().st_mode) == 0o600
    assert _local_key(tmp_path) == key


def test_model_zip_extraction_keeps_to_the_model_folder(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/config.json", "{}")
        zf.writestr("model/../escape.txt", "x")
        zf.writestr("../escape.txt", "x")
        zf.writestr("/abs.txt", "x")
        zf.writestr("model/sub/deep.txt", "x")
        zf.writestr("model/onnx/model.onnx", "onnx")
        zf.writestr("model/onnx/..", "x")
        zf.writestr("model/onnx/../../escape.txt", "x")
        zf.writestr("model/onnx/deeper/model.onnx", "x")
    out = tmp_path / "out"
    _extract_model(archive, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "model",
        "model/config.json",
        "model/onnx",
        "model/onnx/model.onnx",
    ]
    assert (out / "model" / "onnx" / "model.onnx").read_text() == "onnx"
    assert not (tmp_path / "escape.txt").exists()


def test_submit_takes_the_compress_options_and_the_client_ones() -> None:
    args = build_parser().parse_args(
        [
            "submit",
            "--model",
            "m",
            "--train",
            "t.jsonl",
            "--out",
            "o",
            "--strategy",
            "drop-top",
            "--layers-to-remove",
            "2",
            "--no-distill",
            "--url",
            "http://x",
            "--api-key",
            "k",
            "--metadata",
            "team=search",
        ]
    )
    assert (args.strategy, args.layers_to_remove, args.no_distill) == ("drop-top", 2, True)
    assert (args.url, args.api_key, args.metadata) == ("http://x", "k", ["team=search"])


def test_version_is_the_installed_distribution_s(capsys) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"layerfuse {version('layerfuse')}"


def complete(line: str, tmp_path: Path) -> list[str]:
    """What the shell gets when it asks ``layerfuse`` to complete ``line`` (argcomplete)."""
    answer = tmp_path / "completion.txt"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
    }
    result = subprocess.run(
        [sys.executable, "-m", "layerfuse.cli"], env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return sorted(answer.read_text().split())


def test_shell_completion_knows_the_commands_options_and_choices(tmp_path: Path) -> None:
    assert complete("layerfuse jo", tmp_path) == ["jobs"]
    assert complete("layerfuse d", tmp_path) == ["download"]
    assert complete("layerfuse jobs --status c", tmp_path) == ["cancelled", "cancelling"]
    assert "--layers-to-remove" in complete("layerfuse submit --la", tmp_path)
    shellcode = subprocess.run(
        [sys.executable, "-m", "layerfuse.cli", "completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shellcode.returncode == 0 and "complete " in shellcode.stdout
    assert "layerfuse" in shellcode.stdout


def test_the_cli_s_job_statuses_are_the_store_s() -> None:
    from layerfuse.client import JOB_STATUSES as CLIENT_STATUSES
    from layerfuse.commands.remote import JOB_STATUSES as CLI_STATUSES
    from layerfuse.service.store import JOB_STATUSES

    assert tuple(JOB_STATUSES) == CLIENT_STATUSES == CLI_STATUSES


def test_up_refuses_weak_configured_keys_before_starting_anything(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LAYERFUSE_API_KEYS": "acme:short-key-1,globex:" + "g" * 32,
        "LAYERFUSE_ENV": "production",
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "layerfuse.cli", "up", "--port", "1", "--data-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "acme" in result.stderr and "short-key-1" not in result.stderr + result.stdout
    assert not (tmp_path / "api_key").exists()  # nothing generated: the variable was set
    assert not (tmp_path / "layerfuse.db").exists()  # nothing started


@pytest.mark.parametrize(
    ("given", "compare"),
    [
        ([], ["drop-top", "uniform"]),
        (["--compare", "none"], []),
        (["--compare", "uniform"], ["uniform"]),
    ],
)
def test_submit_and_compress_pass_compare_to_the_spec(given, compare) -> None:
    assert all(d.compare == compare for d in _distillations(given))


def _distillations(given: list[str]) -> list:
    """The spec's ``distillation`` that ``submit`` and ``compress`` build from ``given``."""
    from layerfuse.commands.compress import method_fields
    from layerfuse.compression.spec import MethodSpec

    specs = []
    for command in ("submit", "compress"):
        args = build_parser().parse_args(
            [command, "--model", "m", "--train", "t.jsonl", "--out", "o", *given]
        )
        fields = method_fields(args)
        fields.pop("columns")
        specs.append(MethodSpec(**fields).distillation)
    return specs


@pytest.mark.parametrize(("given", "race"), [([], True), (["--no-race"], False)])
def test_submit_and_compress_pass_race_to_the_spec(given, race) -> None:
    assert all(d.race is race for d in _distillations(given))


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--device", "cuda"], {"CUDA_VISIBLE_DEVICES": ""}, "torch sees no CUDA device"),
        (["--pretend-gpu"], {"LAYERFUSE_ENV": "production"}, "for the test suite"),
        (["--gpus", "0", "--device", "cpu"], {}, "--gpus starts CUDA workers"),
        (["--gpus", "0,0"], {}, "distinct GPU indexes"),
    ],
    ids=["cuda-without-gpu", "pretend-outside-tests", "gpus-on-cpu", "gpus-repeated"],
)
def test_a_worker_refuses_a_device_it_cannot_serve(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """Exit 2 with the reason, never a worker that consumes the wrong queue."""
    variables = {**os.environ, "LAYERFUSE_DATA_DIR": str(tmp_path), "LAYERFUSE_ENV": "test"}
    variables.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "layerfuse.cli", "worker", *args],
        cwd=REPO,
        env={**variables, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_download_and_submit_refuse_an_unusable_out_before_any_request(
    tmp_path: Path, capsys
) -> None:
    """Found after the whole job had run, as a FileExistsError traceback."""
    from layerfuse.cli import main

    (tmp_path / "afile").write_text("hi")
    (tmp_path / "model").mkdir()
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "x"}\n')
    url = ["--url", "http://127.0.0.1:9"]  # nothing listens: any request would fail as exit 1
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        assert main(["download", "job_x", "--out", str(out), *url]) == 2
        assert "error (--out)" in capsys.readouterr().err
        submit = [
            "submit",
            "--model",
            str(tmp_path / "model"),
            "--train",
            str(tmp_path / "train.jsonl"),
        ]
        assert main([*submit, "--out", str(out), *url]) == 2
        assert "is a file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["status", "", *url])
    assert exit_info.value.code == 2


def test_a_reader_that_leaves_early_ends_the_command_quietly_with_141(tmp_path: Path) -> None:
    """`layerfuse ... --json | head` ended in a BrokenPipeError traceback."""
    script = (
        "import sys\n"
        "from layerfuse.cli import main\n"
        "from layerfuse.commands import output\n"
        # A JSON answer far larger than the pipe's buffer, as a long `jobs --json` page is.
        "output_run = lambda args: output.print_json([{'id': i} for i in range(200_000)]) or 0\n"
        "import layerfuse.commands.completion as c\n"
        "c.run = output_run\n"
        "sys.exit(main(['completion', 'bash']))\n"
    )
    done = subprocess.run(
        f'{sys.executable} -c "$SCRIPT" | head -c 10 > /dev/null; echo ${{PIPESTATUS[0]}}',
        shell=True,
        executable="/bin/bash",
        env={**os.environ, "SCRIPT": script},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "141", done.stderr
    assert "Traceback" not in done.stderr


def test_unusable_connection_and_server_arguments_exit_2_before_anything_runs(
    tmp_path: Path, capsys
) -> None:
    """Each was sent and failed after the retries as a 'broken connection', or a traceback."""
    from layerfuse.cli import main

    assert main(["status", "job_x", "--url", "127.0.0.1:8000"]) == 2
    assert "--url '127.0.0.1:8000' is not an http(s) URL" in capsys.readouterr().err
    key = ["--url", "http://127.0.0.1:9", "--api-key"]
    for bad in ("lf_k\u00e9y", "bad\nkey"):
        assert main(["status", "job_x", *key, bad]) == 2
        assert "--api-key" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "x"}\n')
    submit = [
        "submit",
        "--model",
        str(tmp_path / "empty"),
        "--train",
        str(tmp_path / "train.jsonl"),
    ]
    assert main([*submit, "--out", str(tmp_path / "o"), "--url", "http://127.0.0.1:9"]) == 2
    assert "holds no model files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["up", "--port", "99999"])
    assert exit_info.value.code == 2
    (tmp_path / "afile").write_text("hi")
    assert main(["up", "--data-dir", str(tmp_path / "afile"), "--port", "18999"]) == 2
    assert "error (--data-dir)" in capsys.readouterr().err
