"""`specwise serve` flags that need no engine: the GPU command and bad input."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from specwise.cli import app


def run(args):
    return CliRunner().invoke(app, args)


def test_serve_print_command_is_the_gpu_command():
    result = run(["serve", "--mode", "ngram", "--k", "3", "--model", "/models/target", "--print-command",
                  "--vllm-version", "0.32.0"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("vllm serve /models/target --host 127.0.0.1 --port 8000")
    assert '"method":"ngram"' in result.output and '"num_speculative_tokens":3' in result.output


def test_serve_embedded_print_command_needs_no_engine():
    result = run(["serve", "--print-command"])
    assert result.exit_code == 0, result.output
    assert "--dtype float32" in result.output and '"method":"draft_model"' in result.output


@pytest.mark.parametrize("args, field", [
    (["--mode", "eagle"], "--mode"),
    (["--draft", "/d"], "--draft"),
    (["--model", "/t", "--mode", "draft"], "--draft"),
    (["--k", "0"], "--k"),
])
def test_serve_bad_input_is_one_line(args, field):
    result = run(["serve", *args, "--print-command"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(f"error: {field}:"), result.output


def test_serve_beyond_loopback_needs_allow_remote(monkeypatch, tmp_path):
    monkeypatch.setattr("specwise.cli.serve.require_vllm", lambda: None)
    result = run(["serve", "--mode", "baseline", "--model", str(tmp_path / "m"), "--host", "0.0.0.0",
                  "--log-dir", str(tmp_path / "logs")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --host: 0.0.0.0 would expose the server beyond this machine; add --allow-remote if that is meant "
        "(the server takes a generated API key)"]
    assert not (tmp_path / "logs").exists()


def test_serve_print_command_is_shell_quoted():
    import shlex

    model = "/models/my target's dir"
    result = run(["serve", "--mode", "baseline", "--model", model, "--print-command", "--vllm-version", "0.32.0"])
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.output.splitlines()[0])
    assert argv[:3] == ["vllm", "serve", model]
