"""`specwise watch` through counter resets and outages, the rules' and the dashboard's structure, thresholds
from an experiment. The rules themselves are proven in Prometheus' own tester (test_monitor_promtool.py)
and against a real server in a real Prometheus (test_engine_real.py)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specwise.cli import app
from specwise.experiment import findings_from_disk
from specwise.monitor import GUIDE, Poll, Threshold, dashboard, rule_groups, series, thresholds_from_findings, views
from specwise.monitor.live import watch
from specwise.metrics import snapshot_by_model

FIXTURE = Path(__file__).parent / "fixtures" / "experiment-543882e"


def metrics_text(drafts: float, draft_tokens: float, accepted: float, per_pos: tuple[float, ...] = (),
                 model: str = "m", generated: float = 0.0, kv: float = 0.2) -> str:
    labels = f'model_name="{model}",engine="0"'
    lines = ["# TYPE vllm:spec_decode_num_drafts counter", f"vllm:spec_decode_num_drafts_total{{{labels}}} {drafts}",
             "# TYPE vllm:spec_decode_num_draft_tokens counter",
             f"vllm:spec_decode_num_draft_tokens_total{{{labels}}} {draft_tokens}",
             "# TYPE vllm:spec_decode_num_accepted_tokens counter",
             f"vllm:spec_decode_num_accepted_tokens_total{{{labels}}} {accepted}",
             "# TYPE vllm:spec_decode_num_accepted_tokens_per_pos counter",
             *(f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{{labels},position="{i}"}} {n}'
               for i, n in enumerate(per_pos)),
             "# TYPE vllm:generation_tokens counter", f"vllm:generation_tokens_total{{{labels}}} {generated}",
             "# TYPE vllm:kv_cache_usage_perc gauge", f"vllm:kv_cache_usage_perc{{{labels}}} {kv}",
             "# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{{{labels}}} 3"]
    return "\n".join(lines) + "\n"


class Scripted:
    """A /metrics endpoint that answers each poll with the next scripted reply: text, or 'down' (the
    connection closes without an answer) or an HTTP status."""

    def __init__(self, replies: list[str | int]) -> None:
        self.replies = list(replies)
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                reply = script.replies.pop(0) if len(script.replies) > 1 else script.replies[0]
                if reply == "down":
                    self.close_connection = True
                    self.connection.close()
                    return
                if isinstance(reply, int):
                    self.send_response(reply)
                    self.end_headers()
                    return
                body = reply.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[type[Scripted]]:
    made: list[Scripted] = []

    def make(replies: list[str | int]) -> Scripted:
        made.append(Scripted(replies))
        return made[-1]

    yield make  # type: ignore[misc]
    for s in made:
        s.close()


def test_watch_survives_an_outage_and_a_restart_with_the_right_numbers(scripted, tmp_path: Path) -> None:
    server = scripted([
        metrics_text(100, 400, 300, (90, 80, 70, 60), generated=1000),
        metrics_text(200, 800, 600, (180, 160, 140, 120), generated=2000),   # +100 drafts at 0.75
        "down",                                                              # unreachable
        503,                                                                 # still not serving
        metrics_text(50, 200, 50, (30, 10, 5, 5), generated=300),            # restarted: counts from 0, at 0.25
        metrics_text(150, 600, 250, (90, 70, 50, 40), generated=900),       # +100 drafts at 0.5
    ])
    seen: list[list] = []
    last = watch([server.url], interval_s=0.1, polls=6, record=tmp_path / "rec", on_update=seen.append)
    # the outage is shown while it lasts, and no figure turns into an exception or a zero
    assert seen[2][0].status.startswith("unreachable") and "RemoteProtocolError" in seen[2][0].status
    assert "HTTPStatusError" in seen[3][0].status
    assert seen[2][0].windows["start"].acceptance_rate == pytest.approx(0.75)
    (view,) = last
    assert view.status == "ok" and view.restarts == 1 and view.model == "m"
    start = view.windows["start"]
    # drafted: +400 before the outage, 200 from zero after the restart, +400 → 1000; accepted 300 + 50 + 200
    assert start.acceptance_rate == pytest.approx(550 / 1000)
    assert start.acceptance_length == pytest.approx(1 + 550 / 250)
    assert start.per_position == pytest.approx({0: (90 + 30 + 60) / 250, 1: (80 + 10 + 60) / 250,
                                                 2: (70 + 5 + 45) / 250, 3: (60 + 5 + 35) / 250})
    assert view.lifetime.acceptance_rate == pytest.approx(250 / 600)   # the restarted server's own figure
    assert view.kv_usage == pytest.approx(0.2) and view.running == 3
    # the recording is a run directory: one sample per poll, the failed ones with their error
    samples = [json.loads(line) for line in (tmp_path / "rec" / "metrics.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and [s["error"] is not None for s in samples] == [False, False, True, True, False, False]
    result = CliRunner().invoke(app, ["summarize", str(tmp_path / "rec"), "--json"])
    assert result.exit_code == 0, result.output
    # `report` plots the recording: acceptance over the trailing minute at each poll that closes a window
    result = CliRunner().invoke(app, ["report", str(tmp_path / "rec")])
    assert result.exit_code == 0, result.output
    timeline = json.loads((tmp_path / "rec" / "report.json").read_text())["timeline"]
    assert [round(p["acceptance_rate"], 3) for p in timeline] == [0.75, round(350 / 600, 3), 0.55]
    page = (tmp_path / "rec" / "report.html").read_text()
    assert "data:image/png;base64," in page and "2 failed" in page


def test_watch_once_json(scripted) -> None:
    server = scripted([metrics_text(100, 400, 300, (90, 80, 70, 60)), metrics_text(140, 560, 400, (126, 110, 95, 69))])
    result = CliRunner().invoke(app, ["watch", server.url, "--once", "--json", "--interval", "0.1"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["model"] == "m" and row["status"] == "ok"
    assert row["windows"]["1m"]["acceptance_rate"] == pytest.approx(100 / 160)
    assert row["windows"]["1m"]["acceptance_length"] == pytest.approx(1 + 100 / 40)
    assert row["lifetime"]["acceptance_rate"] == pytest.approx(400 / 560)


def test_watch_an_unreachable_server_is_a_row_not_a_crash() -> None:
    result = CliRunner().invoke(app, ["watch", "http://127.0.0.1:9", "--once", "--json", "--interval", "0.1"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["status"].startswith("unreachable") and row["windows"] == {}


def test_watch_table_escapes_markup_in_model_names() -> None:
    from rich.console import Console

    from specwise.report import watch_table

    polls = [Poll(0.0, snapshot_by_model(metrics_text(1, 4, 3, model="[/]evil[bold]"))),
             Poll(1.0, snapshot_by_model(metrics_text(2, 8, 5, model="[/]evil[bold]")))]
    console = Console(record=True, width=200)
    console.print(watch_table(views("http://x", polls, 1.0), 0.5))
    assert "[/]evil[bold]" in console.export_text()


def test_views_split_by_model_and_window() -> None:
    two = metrics_text(10, 40, 30, model="a") + metrics_text(10, 40, 10, model="b").replace("# TYPE", "# HELP")
    later = metrics_text(20, 80, 60, model="a") + metrics_text(20, 80, 20, model="b").replace("# TYPE", "# HELP")
    polls = [Poll(0.0, snapshot_by_model(two)), Poll(400.0, snapshot_by_model(later)),
             Poll(430.0, snapshot_by_model(later))]
    by = {v.model: v for v in views("u", polls, 430.0)}
    assert by["a"].windows["start"].acceptance_rate == pytest.approx(0.75)
    assert by["b"].windows["start"].acceptance_rate == pytest.approx(0.25)
    # the 5 m window holds the last two polls only: nothing drafted between them
    assert by["a"].windows["5m"].acceptance_rate is None and by["a"].windows["5m"].drafts == 0


def test_rules_and_dashboard_structure() -> None:
    groups = rule_groups([GUIDE], k=4)["groups"]
    records = {r["record"] for r in groups[0]["rules"]}
    alerts = [r for r in groups[1]["rules"]]
    assert {series("acceptance_rate", s) for s in ("5m", "1h", "24h")} <= records
    assert {a["alert"] for a in alerts} == {"SpecDecodeAcceptanceBelowBreakEven", "SpecDecodeAcceptanceLengthRegression",
                                           "SpecDecodePositionCollapse", "SpecDecodeKVCachePressure"}
    assert all(a["for"] and a["labels"]["severity"] in ("warning", "critical") and a["annotations"]["runbook"]
               for a in alerts)
    # every series an alert reads is recorded here or exported by vLLM
    for a in alerts:
        for name in re.findall(r"specwise:[a-z_]+:[0-9a-z]+", a["expr"]):
            assert name in records, name
    board = dashboard(0.5)
    ids = [p["id"] for p in board["panels"]]
    assert board["schemaVersion"] >= 36 and len(ids) == len(set(ids)) == 7
    exported = {"vllm:spec_decode_num_drafts_total", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
                "vllm:num_preemptions_total", "vllm:num_requests_running", "vllm:num_requests_waiting",
                "vllm:request_time_per_output_token_seconds_bucket", "vllm:time_per_output_token_seconds_bucket"}
    for panel in board["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"(?:specwise|vllm):[a-z_]+(?::[0-9a-z]+)?", target["expr"]):
                assert name in records or name in exported, name
    json.dumps(board)


def test_thresholds_from_an_experiment() -> None:
    findings = findings_from_disk(FIXTURE)
    thresholds = thresholds_from_findings(findings, {"draft": "specwise-target", "ngram": "specwise-ngram"})
    enabled = [f for f in findings.findings if f.verdict.decision.allows]
    assert enabled, "the fixture enables something"
    by_model = {t.model: t for t in thresholds}
    draft = by_model["specwise-target"]
    # the break-even the verdict measured at its limit, the strictest over the workloads that enabled it
    expected = max(f.verdict.break_even[f.verdict.limit.load if f.verdict.limit else max(c.load for c in f.loads)]
                   for f in enabled if f.candidate == "draft")
    assert draft.break_even == pytest.approx(expected) and 0 < draft.break_even < 1
    assert draft.tpot_p99_s is not None and "experiment" in draft.source
    # every other model keeps the guide's threshold, and is told apart by its name
    assert by_model[None].break_even == GUIDE.break_even and by_model[None].others == ("specwise-target",)
    exprs = [r["expr"] for r in rule_groups(thresholds)["groups"][1]["rules"]
             if r["alert"] == "SpecDecodeAcceptanceBelowBreakEven"]
    assert [bool(re.search(r'model_name="specwise-target"', e)) for e in exprs] == [True, False]
    assert re.search(r'model_name!~"specwise\\\\-target"', exprs[1]), exprs[1]


def test_rules_cli_writes_files_and_refuses_bad_values(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["rules", "--out", str(tmp_path / "r.yml"), "--dashboard", str(tmp_path / "d.json"),
                                 "--break-even", "0.3"])
    assert result.exit_code == 0, result.output
    assert "< 0.3" in (tmp_path / "r.yml").read_text() and json.loads((tmp_path / "d.json").read_text())["panels"]
    for bad in (["--break-even", "1.5"], ["--break-even", "nan"], ["--k", "0"], ["--tpot-p99-ms", "inf"]):
        result = runner.invoke(app, ["rules", *bad])
        assert result.exit_code == 2, (bad, result.output)
    result = runner.invoke(app, ["watch", "localhost:8000", "--once"])
    assert result.exit_code == 2 and "http(s) URL" in result.output, result.output


def test_threshold_selector_quotes_model_names() -> None:
    rules = rule_groups([Threshold(model='we"ird\\name', break_even=0.4, source="t")])
    expr = rules["groups"][1]["rules"][0]["expr"]
    assert 'model_name="we\\"ird\\\\name"' in expr


def test_a_recorded_poll_sums_every_model_like_bench(scripted, tmp_path: Path) -> None:
    two = metrics_text(10, 40, 30, model="a") + metrics_text(10, 40, 10, model="b").replace("# TYPE", "# HELP")
    server = scripted([two])
    watch([server.url], interval_s=0.1, polls=1, record=tmp_path / "rec")
    (sample,) = [json.loads(line) for line in (tmp_path / "rec" / "metrics.jsonl").read_text().splitlines()]
    assert sample["values"]["vllm:spec_decode_num_accepted_tokens_total"] == 40
    assert sample["values"]["vllm:spec_decode_num_draft_tokens_total"] == 80
