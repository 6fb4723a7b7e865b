"""Every server reply is untrusted: `specwise bench` against a fault server whose replies are valid JSON of
the wrong shape, implausible counts, endless streams and lines, odd names and a broken /metrics. Each bad
request is recorded with its fault (or its ignored values noted), every request is on disk, the good ones
are ok, and the run finishes."""

from __future__ import annotations

import io
import threading

import pytest
from faultserver import BAD_EVENTS, BAD_USAGE, FaultServer
from rich.console import Console
from test_bench_faults import check_intact, dataset
from typer.testing import CliRunner

from specwise.cli import app
from specwise.analysis import summarize
from specwise.analysis.compare import short_outputs
from specwise.load import BenchConfig, execute_bench
from specwise.load.client import retry_after
from specwise.load.scrape import probe
from specwise.plan import Plan
from specwise.report.console import render_plan
from specwise.results import load_run

TOKENS = 8


def bench(tmp_path, server: FaultServer, names: list[str], repeat: int = 2, **config) -> dict[str, list]:
    """Run every prompt of `names` `repeat` times; the records by prompt, after checking the run is whole."""
    n = repeat * len(names)
    settings = {"concurrency": 3, "max_tokens": TOKENS, "k": 1, "scrape_interval_s": 0.5} | config
    execute_bench(BenchConfig(url=server.url, requests=n, dataset=dataset(tmp_path, names), **settings),
                  tmp_path / "run")
    assert load_run(tmp_path / "run").manifest.complete
    by_prompt: dict[str, list] = {}
    for record in check_intact(tmp_path / "run", n):
        by_prompt.setdefault(record.prompt_id, []).append(record)
    bad = [(r.error, r.error_detail, r.connect_retries) for r in by_prompt.pop("ok")
           if not r.ok or r.output_tokens != TOKENS]
    assert not bad, bad
    return by_prompt


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_events_of_the_wrong_shape_are_per_request_faults(tmp_path, api):
    with FaultServer(tokens=TOKENS, chunk=2) as server:
        records = bench(tmp_path, server, ["ok", *BAD_EVENTS], api=api)
    for name, recs in records.items():
        kind = "stream_error" if name == "error_list" else "malformed_event"
        assert {r.error for r in recs} == {kind}, name
        assert all(r.error_detail for r in recs)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_implausible_usage_and_spec_metrics_are_ignored_and_noted(tmp_path, api):
    names = ["ok", *BAD_USAGE, "usage_inflated", "spec_bad", "spec"]
    with FaultServer(tokens=TOKENS, chunk=2) as server:
        records = bench(tmp_path, server, names, api=api)
    for name, recs in records.items():
        for r in recs:
            # The logprobs counted every token: the stream's figures stand, and TPOT with them.
            assert r.ok and r.output_tokens == TOKENS and r.token_source == "logprobs", name
            assert r.tpot_s is not None and r.chunk_tokens == [2, 2, 2, 2]
            if name in ("usage_list", "usage_many", "spec_bad"):
                assert len(r.anomalies) == 1 and "ignored" in r.anomalies[0]
            if name in ("usage_negative", "usage_inflated"):
                assert r.token_count_disagreement and str(-3 if name == "usage_negative" else 8 * TOKENS) in \
                    r.token_count_disagreement
            if name == "spec_bad":
                assert r.spec is None and r.acceptance_source == "chunks"
            if name == "spec":
                assert r.acceptance == 0.5 and r.acceptance_source == "server" and not r.anomalies


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_without_logprobs_the_token_count_is_marked_and_no_acceptance_is_made_up(tmp_path, api):
    names = ["ok", "no_logprobs", "no_logprobs_no_usage", "no_logprobs_inflated"]
    with FaultServer(tokens=TOKENS, chunk=2) as server:
        records = bench(tmp_path, server, names, api=api)
    for name, recs in records.items():
        for r in recs:
            assert r.ok and r.chunk_tokens == [1, 1, 1, 1], name  # 4 chunks of 2 tokens each, seen as text
            # One token per chunk would read as "no draft ever accepted" at k=1: no acceptance at all instead.
            assert r.acceptance is None and r.acceptance_source == "none"
            assert r.itl_s == []
            if name == "no_logprobs":  # a sane usage gives the total, and TPOT with it
                assert r.token_source == "usage" and r.output_tokens == TOKENS and r.tpot_s is not None
            else:  # no usage, or an 8× inflated one (over max_tokens): the count is an estimate, no TPOT
                assert r.token_source == "chunks" and r.output_tokens == 4 and r.tpot_s is None
                assert (r.token_count_disagreement is not None) == (name == "no_logprobs_inflated")
    # The summary says how many counts are estimates, and none of them reads as a short output.
    run = load_run(tmp_path / "run")
    assert summarize(run).estimated_tokens == 4
    assert short_outputs([run]) == 0


def test_endless_replies_are_cut(tmp_path):
    """A server that ignores max_tokens, one that streams keep-alive events forever and one that sends an endless
    line: each is cut and recorded, and the run ends in about the request deadline."""
    with FaultServer(tokens=TOKENS, chunk=2, gap_s=0.01) as server:
        records = bench(tmp_path, server, ["ok", "over_max", "endless", "long_line"], repeat=1, concurrency=4,
                        request_timeout_s=1.5)
    assert [r.error for r in records["over_max"]] == ["over_max_tokens"]
    assert sum(records["over_max"][0].chunk_tokens) <= TOKENS
    assert [r.error for r in records["endless"]] == ["request_timeout"]
    endless = records["endless"][0]
    assert 1.4 < endless.end_s - endless.sent_s < 3
    assert [r.error for r in records["long_line"]] == ["line_too_long"]


def test_request_timeout_flag(tmp_path):
    with FaultServer(tokens=TOKENS, chunk=2, gap_s=0.01) as server:
        result = CliRunner().invoke(app, ["bench", "--url", server.url, "--concurrency", "1", "--requests", "1",
                                          "--max-tokens", str(TOKENS), "--request-timeout", "0.5", "--dataset",
                                          dataset(tmp_path, ["endless"]), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    run = load_run(tmp_path / "run")
    assert run.manifest.config["request_timeout_s"] == 0.5
    assert [r.error for r in run.requests] == ["request_timeout"]


@pytest.mark.parametrize("models, version, expected", [
    ([{"id": 123}], 0.32, (["123"], "0.32")),
    ([{"id": None}, "x", {"id": {"a": 1}}, {"id": "m"}], ["v"], (["m"], None)),
    ([{"id": "[/]odd[bold]"}], "[/]", (["[/]odd[bold]"], "[/]")),
])
def test_probe_reads_odd_names(models, version, expected):
    with FaultServer(models=models, version=version) as server:
        assert probe(server.url, None) == expected


def test_markup_in_the_servers_names_is_printed_as_text(tmp_path):
    with FaultServer(models=[{"id": "[/]m[bold]"}], version="[/x]") as server:
        result = CliRunner().invoke(app, ["bench", "--url", server.url, "--concurrency", "1", "--requests", "2",
                                          "--max-tokens", str(TOKENS), "--dataset", dataset(tmp_path, ["ok"]),
                                          "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
        assert "[/]m[bold] at" in result.output and "(vLLM [/x])" in result.output
        assert {r["model"] for r in server.requests} == {"[/]m[bold]"}


METRICS = """# TYPE vllm:spec_decode_num_drafts counter
vllm:spec_decode_num_drafts_total 7
vllm:spec_decode_num_draft_tokens_total NaN
vllm:spec_decode_num_accepted_tokens_total +Inf
vllm:spec_decode_num_accepted_tokens_per_pos_total 3
vllm:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 2
this is { not prometheus
vllm:kv_cache_usage_perc 0.25
"""


def test_a_broken_metrics_page_keeps_its_good_series(tmp_path):
    with FaultServer(tokens=TOKENS, metrics=METRICS) as server:
        bench(tmp_path, server, ["ok"], repeat=3)
    samples = load_run(tmp_path / "run").samples
    assert samples and all(s.error is None for s in samples)
    assert samples[0].values == {"vllm:spec_decode_num_drafts_total": 7.0, "vllm:kv_cache_usage_perc": 0.25,
                                 "vllm:spec_decode_num_accepted_tokens_per_pos_total{position=0}": 2.0}


def test_a_slow_metrics_endpoint_does_not_hold_up_the_run(tmp_path):
    with FaultServer(tokens=TOKENS, metrics_delay_s=5.0) as server:
        bench(tmp_path, server, ["ok"], repeat=4, concurrency=1, scrape_interval_s=0.3)
    run = load_run(tmp_path / "run")
    assert run.samples and all(s.error == "timeout after 0.3 s" for s in run.samples)
    assert max(r.end_s for r in run.requests) < 3.0  # the 'before' scrape gave up after 0.3 s, not 5


def test_a_short_server_restart_costs_latency_not_requests(tmp_path):
    with FaultServer(tokens=TOKENS, gap_s=0.01) as server:
        threading.Timer(0.5, server.pause, (0.3,)).start()
        records = bench(tmp_path, server, ["ok"], repeat=60, concurrency=2)
    # bench() checked every request is ok; some of them met the refused port and got through on a retry.
    assert records == {}
    retried = [r for r in load_run(tmp_path / "run").requests if r.connect_retries]
    assert retried and all(r.sent_s - r.scheduled_s >= 0.05 for r in retried)  # sent_s: the try that got through


@pytest.mark.parametrize("header, seconds", [("3", 3.0), ("nan", None), ("inf", None), ("-5", None), ("x", None)])
def test_retry_after_is_a_sane_wait_or_none(header, seconds):
    assert retry_after(header) == seconds


def test_markup_in_a_plans_model_name_is_printed_as_text():
    result = CliRunner().invoke(app, ["plan", "--target", "llama-3.1-8b", "--method", "ngram", "--gpu", "l40s",
                                      "--json"])
    plan = Plan.model_validate_json(result.output)
    plan = plan.model_copy(update={"target": plan.target.model_copy(update={"name": "/models/[/]odd[bold]"})})
    out = io.StringIO()
    render_plan(plan, Console(file=out, width=200))
    assert "/models/[/]odd[bold]" in out.getvalue()
