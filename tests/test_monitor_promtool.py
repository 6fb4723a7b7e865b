"""The generated rules in Prometheus' own tools: `promtool check rules` on every file, and `promtool test rules`
proving each alert fires, and stays quiet, at the right values — the guide's healthy 0.76 and unhealthy 0.38
acceptance, a per-position collapse (0.95 / 0.84 / 0.70 falling to 0.05 / 0.002 / 0), an acceptance-length
regression, KV pressure, P99 TPOT over the baseline's, and thresholds taken from an experiment.

promtool comes from Debian's `prometheus` package; `make test` installs it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from specwise.monitor import GUIDE, Threshold, rule_groups

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (make test installs it)")

BREAK_EVEN = "SpecDecodeAcceptanceBelowBreakEven"


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    shown = ", ".join(f'{k}="{v}"' for k, v in {"instance": "a", "engine": "0", **labels}.items())
    return {"series": f"{name}{{{shown}}}", "values": values}


def spec_series(model: str, accepted_per_min: float, drafts: float = 100, k: int = 4, minutes: int = 40,
                **labels: str) -> list[dict[str, str]]:
    return [series("vllm:spec_decode_num_drafts_total", f"0+{drafts}x{minutes}", model_name=model, **labels),
            series("vllm:spec_decode_num_draft_tokens_total", f"0+{drafts * k}x{minutes}", model_name=model, **labels),
            series("vllm:spec_decode_num_accepted_tokens_total", f"0+{accepted_per_min}x{minutes}", model_name=model,
                   **labels)]


def two_phases(before: float, after: float, minutes_before: int, minutes_after: int) -> str:
    """A counter growing `before` per minute, then `after` per minute (promtool's expanding notation)."""
    end = before * minutes_before
    return f"0+{before}x{minutes_before} {end + after:g}+{after}x{minutes_after - 1}"


def render(template: str, labels: dict[str, str], value: float | None = None) -> str:
    """The two template forms the rules use: {{ $labels.NAME }} and {{ $value | printf "%.Nf" }}."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)
    return re.sub(r'\{\{ \$value \| printf "(%\.\d+f)" \}\}', lambda m: m.group(1) % value, text)


def alerts(rules: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == name]


def expected(rules: dict[str, Any], name: str, labels: dict[str, str], value: float | None = None,
             index: int = 0) -> dict[str, Any]:
    rule = alerts(rules, name)[index]
    return {"exp_labels": {**labels, **rule["labels"]},
            "exp_annotations": {k: render(v, labels, value) for k, v in rule["annotations"].items()}}


def promtool(tmp_path: Path, rules: dict[str, Any], tests: list[dict[str, Any]]) -> None:
    rule_file, test_file = tmp_path / "rules.yml", tmp_path / "tests.yml"
    rule_file.write_text(yaml.safe_dump(rules, sort_keys=False, width=10_000))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    test_file.write_text(yaml.safe_dump({"rule_files": [rule_file.name], "evaluation_interval": "1m",
                                         "tests": tests}, sort_keys=False, width=10_000))
    result = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_healthy_and_unhealthy_acceptance(tmp_path: Path) -> None:
    rules = rule_groups([GUIDE], k=4)
    sick = {"model_name": "sick", "instance": "a"}
    promtool(tmp_path, rules, [{
        "interval": "1m",
        "input_series": spec_series("healthy", 304) + spec_series("sick", 152),   # 0.76 and 0.38 of 400 drafted
        "promql_expr_test": [
            # round(): promtool 2.42 compares floats exactly
            {"expr": "round(specwise:spec_decode_acceptance_rate:5m, 0.001)", "eval_time": "30m",
             "exp_samples": [{"labels": '{model_name="healthy", instance="a"}', "value": 0.76},
                             {"labels": '{model_name="sick", instance="a"}', "value": 0.38}]},
            {"expr": 'round(specwise:spec_decode_acceptance_length:1h{model_name="healthy"}, 0.001)',
             "eval_time": "30m", "exp_samples": [{"labels": '{model_name="healthy", instance="a"}', "value": 4.04}]}],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": BREAK_EVEN, "exp_alerts": []},     # pending: 10 m before it fires
            {"eval_time": "30m", "alertname": BREAK_EVEN, "exp_alerts": [expected(rules, BREAK_EVEN, sick, 0.38)]},
            {"eval_time": "30m", "alertname": "SpecDecodePositionCollapse", "exp_alerts": []},
            {"eval_time": "30m", "alertname": "SpecDecodeAcceptanceLengthRegression", "exp_alerts": []},
        ]}])


def test_per_position_collapse_and_length_regression(tmp_path: Path) -> None:
    rules = rule_groups([GUIDE], k=3)
    day, after = 1440, 45
    inputs: list[dict[str, str]] = []
    for model, collapse in (("broken", True), ("steady", False)):
        per_pos = (95, 84, 70)
        after_pos = (5, 0.2, 0) if collapse else per_pos
        inputs += [series("vllm:spec_decode_num_drafts_total", f"0+100x{day + after}", model_name=model),
                   series("vllm:spec_decode_num_draft_tokens_total", f"0+300x{day + after}", model_name=model),
                   series("vllm:spec_decode_num_accepted_tokens_total",
                          two_phases(sum(per_pos), sum(after_pos), day, after), model_name=model)]
        inputs += [series("vllm:spec_decode_num_accepted_tokens_per_pos_total", two_phases(healthy, broken, day, after),
                          model_name=model, position=str(i))
                   for i, (healthy, broken) in enumerate(zip(per_pos, after_pos))]
    broken = {"model_name": "broken", "instance": "a"}
    promtool(tmp_path, rules, [{
        "interval": "1m", "input_series": inputs,
        "alert_rule_test": [
            {"eval_time": f"{day}m", "alertname": "SpecDecodePositionCollapse", "exp_alerts": []},
            {"eval_time": f"{day + 15}m", "alertname": "SpecDecodePositionCollapse",
             "exp_alerts": [expected(rules, "SpecDecodePositionCollapse", broken)]},
            {"eval_time": f"{day}m", "alertname": "SpecDecodeAcceptanceLengthRegression", "exp_alerts": []},
        ],
        "promql_expr_test": [
            {"expr": 'round(specwise:spec_decode_position_acceptance:5m{model_name="steady"}, 0.001)',
             "eval_time": f"{day + 15}m",
             "exp_samples": [{"labels": f'{{model_name="steady", instance="a", position="{i}"}}', "value": v}
                             for i, v in enumerate((0.95, 0.84, 0.7))]},
        ]}])
    # The acceptance length falling from 3.49 to 1.05 for long enough (1 h level below 85 % of the day's, 30 m):
    long_after = 120
    inputs = [series("vllm:spec_decode_num_drafts_total", f"0+100x{day + long_after}", model_name="m"),
              series("vllm:spec_decode_num_draft_tokens_total", f"0+300x{day + long_after}", model_name="m"),
              series("vllm:spec_decode_num_accepted_tokens_total", two_phases(249, 5, day, long_after), model_name="m")]
    rule = alerts(rules, "SpecDecodeAcceptanceLengthRegression")[0]
    promtool(tmp_path, rules, [{
        "interval": "1m", "input_series": inputs,
        "alert_rule_test": [
            {"eval_time": f"{day}m", "alertname": rule["alert"], "exp_alerts": []},
            {"eval_time": f"{day + long_after}m", "alertname": rule["alert"],
             "exp_alerts": [expected(rules, rule["alert"], {"model_name": "m", "instance": "a"}, 1.05)]},
        ]}])


def test_kv_pressure_and_p99_tpot(tmp_path: Path) -> None:
    rules = rule_groups([Threshold(model=None, break_even=0.5, source="test", tpot_p99_s=0.05)])
    inputs = [series("vllm:kv_cache_usage_perc", "0.95x30", model_name="full", instance="a"),
              series("vllm:num_preemptions_total", "0+1x30", model_name="full", instance="a"),
              series("vllm:kv_cache_usage_perc", "0.95x30", model_name="full", instance="b"),     # no preemptions
              series("vllm:num_preemptions_total", "0x30", model_name="full", instance="b"),
              series("vllm:kv_cache_usage_perc", "0.5x30", model_name="roomy", instance="a"),     # preempts, not full
              series("vllm:num_preemptions_total", "0+1x30", model_name="roomy", instance="a")]
    for le, per_min in (("0.05", 50), ("0.1", 100), ("+Inf", 100)):
        inputs.append(series("vllm:request_time_per_output_token_seconds_bucket", f"0+{per_min}x30",
                             model_name="slow", le=le))
    tpot = alerts(rules, "SpecDecodeP99TpotAboveBaseline")[0]
    promtool(tmp_path, rules, [{
        "interval": "1m", "input_series": inputs,
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "SpecDecodeKVCachePressure",
             "exp_alerts": [expected(rules, "SpecDecodeKVCachePressure", {"model_name": "full", "instance": "a"})]},
            # P99 in the (0.05, 0.1] bucket: 0.05 + 0.05 × (99 − 50) / 50 = 0.099 s > 0.05 s
            {"eval_time": "20m", "alertname": tpot["alert"],
             "exp_alerts": [expected(rules, tpot["alert"], {"model_name": "slow", "instance": "a"}, 0.099)]},
        ]}])


def test_thresholds_from_an_experiment_replace_the_guides(tmp_path: Path) -> None:
    """Model m measured a break-even of 0.3: its 0.38 is fine; another model at 0.38 is below the guide's 0.5."""
    rules = rule_groups([Threshold(model="m", break_even=0.3, source="experiment"),
                         Threshold(model=None, break_even=0.5, source="guide", others=("m",))])
    promtool(tmp_path, rules, [{
        "interval": "1m", "input_series": spec_series("m", 152) + spec_series("other-model", 152),
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": BREAK_EVEN,
             "exp_alerts": [expected(rules, BREAK_EVEN, {"model_name": "other-model", "instance": "a"}, 0.38,
                                     index=1)]}]}])


@pytest.mark.parametrize("args", [[], ["--k", "4", "--tpot-p99-ms", "50"], ["--from", str(Path(__file__).parent / "fixtures" / "experiment-543882e")],
                                  ["--break-even", "0.42"]])
def test_every_generated_file_passes_promtool_check(tmp_path: Path, args: list[str]) -> None:
    from typer.testing import CliRunner

    from specwise.cli import app

    out = tmp_path / "rules.yml"
    result = CliRunner().invoke(app, ["rules", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    checked = subprocess.run([PROMTOOL, "check", "rules", str(out)], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
