"""`specwise plan` end to end through the CLI: output, JSON schema, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from specwise.cli import app
from specwise.plan import SCHEMA_VERSION, Plan

EXAMPLE = ["plan", "--target", "llama-3.1-70b", "--target-quant", "int8", "--draft", "llama-3.1-8b",
           "--gpu", "h100-sxm", "--gpus", "2"]


def run(args):
    return CliRunner().invoke(app, args)


def test_reference_example_tables():
    result = run(EXAMPLE)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "86.6" in out and "73.4" in out and "vLLM KV budget" in out and "total × 0.92" in out
    assert "FITS" in out and "Pair checks" in out and "prediction" in out
    assert "vllm serve meta-llama/Llama-3.1-70B-Instruct" in out and "--speculative-config" in out


def test_json_follows_the_schema():
    result = run([*EXAMPLE, "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    plan = Plan.model_validate(data)
    assert plan.schema_version == SCHEMA_VERSION
    assert plan.memory.weights_gb == pytest.approx(86, abs=1)
    assert plan.prediction.rows[0].speedup > 1 > plan.prediction.rows[-1].speedup
    assert {c.name for c in plan.pair_checks} == {"same family", "same tokenizer", "size ratio", "quantization"}
    assert plan.command.argv[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct"]


def test_does_not_fit_exits_1_after_printing():
    result = run(["plan", "--target", "llama-3.1-70b", "--draft", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "2"])
    assert result.exit_code == 1
    assert "DOES NOT FIT" in result.output and "not usable" in result.output


def test_ngram_needs_no_draft():
    result = run(["plan", "--target", "llama-3.1-8b", "--method", "ngram", "--gpu", "l40s", "--json"])
    assert result.exit_code == 0
    plan = Plan.model_validate_json(result.output)
    assert plan.draft is None and '"method":"ngram"' in plan.command.shell


def test_custom_gpu():
    result = run(["plan", "--target", "llama-3.1-8b", "--draft", "llama-3.2-1b", "--gpu-memory-gb", "32",
                  "--gpu-bandwidth-tbs", "1.0", "--gpu-tflops", "200", "--json"])
    assert result.exit_code == 0
    assert Plan.model_validate_json(result.output).gpu["memory_gb"] == 32


@pytest.mark.parametrize("extra,flag,hint", [
    (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization", "(0, 1]"),
    (["--gpu-memory-utilization", "0"], "--gpu-memory-utilization", "(0, 1]"),
    (["--context", "-5"], "--context", "[1, "),
    (["--target-tp", "3", "--gpus", "3"], "--target-tp", "use one of"),
    (["--draft-tp", "3"], "--draft-tp", "1 or 2"),
    (["--draft-tp", "1"], "--draft-tp", "--draft-tp 2"),
    (["--target-tp", "4"], "--target-tp", "--gpus"),
    (["--target-quant", "int3"], "--target-quant", "bf16, fp16, fp8, int8, int4"),
    (["--draft-quant", "q5"], "--draft-quant", "int8"),
    (["--kv-cache-dtype", "int4"], "--kv-cache-dtype", "fp8"),
    (["--alpha", "1.2"], "--alpha", "[0, 1]"),
    (["--k", "0"], "--k", "1..16"),
    (["--method", "medusa"], "--method", "draft_model"),
    (["--vllm-version", "banana"], "--vllm-version", "0.15.0"),
    (["--vllm-version", "0.12.0"], "--vllm-version", ">= 0.15.0"),
    (["--overhead-gb", "-1"], "--overhead-gb", ">= 0"),
])
def test_bad_input_is_one_line_naming_the_flag(extra, flag, hint):
    base = ["plan", "--target", "llama-3.1-70b", "--draft", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "2"]
    result = CliRunner().invoke(app, [*base, *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {flag}:") and hint in lines[0]


@pytest.mark.parametrize("args,flag,hint", [
    (["--target", "llama-3.1-7b", "--draft", "llama-3.1-8b", "--gpu", "h100"], "--target", "llama-3.1-70b"),
    (["--target", "llama-3.1-70b", "--draft", "lama-3.1-8b", "--gpu", "h100"], "--draft", "llama-3.1-8b"),
    (["--target", "llama-3.1-70b", "--draft", "llama-3.1-8b", "--gpu", "h1000"], "--gpu", "h100"),
    (["--target", "llama-3.1-70b", "--draft", "llama-3.1-8b"], "--gpu", "--gpu-memory-gb"),
    (["--target", "llama-3.1-70b", "--gpu", "h100"], "--draft", "ngram"),
])
def test_unknown_names_and_missing_flags(args, flag, hint):
    result = CliRunner().invoke(app, ["plan", *args])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {flag}:") and hint in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "specwise", *EXAMPLE, "--json"], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout)["fits"] is True


def test_draft_tp1_plans_per_gpu_on_v0_versions():
    result = run([*EXAMPLE, "--draft-tp", "1", "--vllm-version", "0.9.2", "--json"])
    assert result.exit_code == 0, result.output
    plan = Plan.model_validate_json(result.output)
    assert plan.memory.per_gpu[0].draft_weights_gb > 0 == plan.memory.per_gpu[1].draft_weights_gb
    assert plan.memory.gpu_memory_utilization == 0.9
    assert '"draft_tensor_parallel_size":1' in plan.command.shell


def test_vocab_mismatch_sets_heterogeneous_vocab():
    result = run(["plan", "--target", "qwen2.5-72b", "--draft", "qwen2.5-0.5b", "--gpu", "h200", "--gpus", "2",
                  "--json"])
    plan = Plan.model_validate_json(result.output)
    assert '"use_heterogeneous_vocab":true' in plan.command.shell



def test_the_prediction_spans_a_range_of_acceptance_and_says_it_is_assumed():
    plan = Plan.model_validate(json.loads(run([*EXAMPLE, "--json"]).output))
    assert plan.prediction.alpha_source == "assumed"
    row = plan.prediction.rows[0]
    assert sorted(row.speedup_by_alpha) == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert row.speedup_by_alpha[0.7] == pytest.approx(row.speedup)
    # At the break-even α the speedup is 1 (between the grid's neighbours around it).
    below = max(a for a in row.speedup_by_alpha if a < row.break_even_alpha)
    assert row.speedup_by_alpha[below] < 1 < row.speedup_by_alpha[round(below + 0.1, 1)]


def test_acceptance_from_a_run(tmp_path):
    """A run whose counters say 2.95 tokens per step at k=4 (1 + 1950 accepted / 1000 drafts). E(α, 4) =
    1 + α + α² + α³ + α⁴: at 0.73 it is 2.936, at 0.735 2.964, so α ≈ 0.7325."""
    from specwise.metrics import ACCEPTED, DRAFT_TOKENS, DRAFTS
    from specwise.results import Manifest, MetricSample, RunWriter

    manifest = Manifest(specwise_version="t", started_at="t", url="u", api="completions", model="m", seed=0,
                        config={"k": 4}, hardware={})
    writer = RunWriter(tmp_path / "run", manifest)
    writer.metric(MetricSample(t_s=0, phase="before", values={DRAFTS: 0, DRAFT_TOKENS: 0, ACCEPTED: 0}))
    writer.metric(MetricSample(t_s=1, phase="after", values={DRAFTS: 1000, DRAFT_TOKENS: 4000, ACCEPTED: 1950}))
    writer.close(complete=True, stop_reason="done")
    plan = Plan.model_validate(json.loads(run([*EXAMPLE, "--acceptance-from", str(tmp_path / "run"), "--json"]).output))
    assert plan.prediction.alpha == pytest.approx(0.7325, abs=0.002)
    assert "measured" in plan.prediction.alpha_source and "2.95 tokens per step" in plan.prediction.alpha_source
    empty = run([*EXAMPLE, "--acceptance-from", str(tmp_path / "nothing")])
    assert empty.exit_code == 2 and "RUN_DIR" in empty.output
