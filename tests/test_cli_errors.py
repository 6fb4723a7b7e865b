"""Nothing a user types, a file holds or a server sends crashes a command: each failure is one line on stderr
naming the flag, field or file and the fix, exit 2; a bug says "internal error", exit 1; --debug shows the
traceback. (bench/fuzz_cli.py feeds every command hundreds of such inputs.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from specwise.cli import app

DEAD = "http://127.0.0.1:9"   # nothing listens: a connection is refused at once
BENCH = ["bench", "--url", DEAD, "--concurrency", "1", "--requests", "2"]
PLAN = ["plan", "--target", "llama-3.1-70b", "--draft", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "2"]
GOOD_CONFIG = {"model_type": "llama", "num_attention_heads": 32, "hidden_size": 4096, "num_hidden_layers": 32,
               "intermediate_size": 14336, "vocab_size": 128256, "num_key_value_heads": 8}
MANIFEST = {"specwise_version": "0.1.0", "started_at": "2026-01-01T00:00:00+00:00", "url": DEAD,
            "api": "completions", "model": "m", "seed": 0, "config": {}, "hardware": {}}
EXPERIMENT = (f"name: x\nservers:\n  - {{name: base, role: baseline, url: '{DEAD}'}}\n  - {{name: cand, url: '{DEAD}'}}"
              "\nworkloads:\n  - {name: w, dataset: structured}\n")


def put(path: Path, data: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def model(tmp: Path, **edit: object) -> str:
    return str(Path(put(tmp / "model" / "config.json", json.dumps({**GOOD_CONFIG, **edit}))).parent)


def run_dir(tmp: Path, manifest: str | bytes) -> str:
    put(tmp / "run" / "manifest.json", manifest)
    return str(tmp / "run")


def experiment_dir(tmp: Path, stored: str | bytes) -> str:
    put(tmp / "exp" / "experiment.json", stored)
    return str(tmp / "exp")


LATIN1 = "caf\xe9".encode("latin-1")

# (case, the command line built in a scratch directory {tmp}, what the error line starts with after "error: ")
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # files that are not UTF-8, unreadable, nested too deep, malformed
    ("yaml not utf-8", lambda t: ["run", put(t / "e.yaml", b"name: x\n" + LATIN1)], "FILE:"),
    ("dataset not utf-8", lambda t: [*BENCH, "--dataset", put(t / "d.jsonl", LATIN1)], "--dataset:"),
    ("api key file not utf-8", lambda t: [*BENCH, "--api-key-file", put(t / "k", LATIN1)], "--api-key-file:"),
    ("config.json not utf-8", lambda t: ["plan", "--target", str(Path(put(t / "m" / "config.json", LATIN1)).parent),
                                         "--gpu", "h100"], "--target:"),
    ("api key file is a directory", lambda t: [*BENCH, "--api-key-file", str(t)], "--api-key-file:"),
    ("missing experiment file", lambda t: ["run", str(t / "nope.yaml")], "FILE:"),
    ("dataset nested too deep", lambda t: [*BENCH, "--dataset", put(t / "d.json", "[" * 100_000 + "]" * 100_000)],
     "--dataset:"),
    ("dataset prompt not text", lambda t: [*BENCH, "--dataset", put(t / "d.jsonl", '{"prompt": 5}\n')], "--dataset:"),
    ("experiment file too big", lambda t: ["run", put(t / "e.yaml", "name: x\n" + "# pad\n" * 400_000)], "FILE:"),
    ("experiment file nested too deep", lambda t: ["run", put(t / "e.yaml", "[" * 20_000 + "]" * 20_000)],
     "{tmp}/e.yaml:"),
    # --out that cannot be written
    ("--out an existing file", lambda t: [*BENCH, "--out", put(t / "f", "x")], "--out:"),
    ("--out below a file", lambda t: [*BENCH, "--out", put(t / "f", "x") + "/run"], "--out:"),
    ("--out too long", lambda t: [*BENCH, "--out", str(t / ("o" * 300))], "--out:"),
    ("--out unwritable", lambda t: [*BENCH, "--out", "/proc/specwise-test/run"], "--out:"),
    ("run --out an existing file", lambda t: ["run", put(t / "e.yaml", EXPERIMENT + "loads: {concurrency: [1]}\n"),
                                              "--out", put(t / "f", "x")], "--out:"),
    ("demo --out an existing file", lambda t: ["demo", "--out", put(t / "f", "x")], "--out:"),
    # URLs and keys
    ("bad port", lambda t: ["bench", "--url", "http://127.0.0.1:abc", "--concurrency", "1", "--requests", "1"],
     "--url:"),
    ("port out of range", lambda t: ["bench", "--url", "http://127.0.0.1:99999", "--concurrency", "1",
                                     "--requests", "1"], "--url:"),
    ("bad scheme", lambda t: ["bench", "--url", "htp://127.0.0.1:9", "--concurrency", "1", "--requests", "1"],
     "--url:"),
    ("unclosed bracket", lambda t: ["bench", "--url", "http://[::1", "--concurrency", "1", "--requests", "1"],
     "--url:"),
    ("experiment url bad port", lambda t: ["run", put(t / "e.yaml", EXPERIMENT.replace(f"url: '{DEAD}'}}\n  -",
                                                                                      "url: 'http://h:x'}\n  -")
                                                      + "loads: {concurrency: [1]}\n")], "servers[0].url:"),
    ("non-ascii api key", lambda t: [*BENCH, "--api-key-file", put(t / "k", "sk-é")], "--api-key-file:"),
    # config.json with a string, zero, negative or list where a number belongs
    ("config.json string", lambda t: ["plan", "--target", model(t, num_attention_heads="32"), "--gpu", "h100"],
     "--target:"),
    ("config.json zero", lambda t: ["plan", "--target", model(t, num_attention_heads=0), "--gpu", "h100"], "--target:"),
    ("config.json negative", lambda t: ["plan", "--target", model(t, num_hidden_layers=-1), "--gpu", "h100"],
     "--target:"),
    ("config.json list", lambda t: ["plan", "--target", model(t, vocab_size=[1]), "--gpu", "h100"], "--target:"),
    ("config.json not an object", lambda t: ["plan", "--target", put(t / "c.json", "[1]"), "--gpu", "h100"],
     "--target:"),
    # corrupted run and experiment directories
    ("run truncated", lambda t: ["summarize", run_dir(t, json.dumps(MANIFEST)[:30])], "RUN_DIR:"),
    ("run wrong types", lambda t: ["summarize", run_dir(t, json.dumps({**MANIFEST, "seed": "zero"}))], "RUN_DIR:"),
    ("run binary garbage", lambda t: ["summarize", run_dir(t, bytes(range(256)))], "RUN_DIR:"),
    ("run missing manifest", lambda t: ["summarize", str(t)], "RUN_DIR:"),
    ("run slo of wrong type", lambda t: ["summarize", run_dir(t, json.dumps({**MANIFEST, "config": {"slo_ms": 5}}))],
     "RUN_DIR:"),
    ("experiment truncated", lambda t: ["report", experiment_dir(t, '{"name": "x", "serv')], "RUN_DIR:"),
    ("experiment garbage", lambda t: ["report", experiment_dir(t, bytes(range(256)))], "RUN_DIR:"),
    ("experiment wrong types", lambda t: ["report", experiment_dir(t, '{"name": 5}')], "RUN_DIR:"),
    ("experiment missing", lambda t: ["report", str(t)], "RUN_DIR:"),
    ("acceptance from a broken run", lambda t: [*PLAN, "--acceptance-from", run_dir(t, "{")], "RUN_DIR:"),
    # NaN, infinity, out of range
    ("temperature nan", lambda t: [*BENCH, "--temperatures", "nan"], "--temperatures:"),
    ("weight inf", lambda t: [*BENCH, "--temperatures", "0:inf"], "--temperatures:"),
    ("weights summing to inf", lambda t: [*BENCH, "--temperatures", "0:1e308,1:1e308"], "--temperatures:"),
    ("rate inf", lambda t: ["bench", "--url", DEAD, "--rate", "inf", "--requests", "1"], "--rate:"),
    ("rate tiny", lambda t: ["bench", "--url", DEAD, "--rate", "1e-300", "--requests", "1"], "--rate:"),
    ("burstiness tiny", lambda t: ["bench", "--url", DEAD, "--rate", "1", "--burstiness", "1e-300",
                                   "--requests", "1"], "--burstiness:"),
    ("timeout inf", lambda t: [*BENCH, "--timeout", "inf"], "--timeout:"),
    ("scrape interval tiny", lambda t: [*BENCH, "--scrape-interval", "1e-9"], "--scrape-interval:"),
    ("slo nan", lambda t: [*BENCH, "--slo-tpot-ms", "nan"], "--slo-tpot-ms:"),
    ("huge concurrency", lambda t: ["bench", "--url", DEAD, "--concurrency", "9" * 40, "--requests", "1"],
     "--concurrency:"),
    ("overhead nan", lambda t: [*PLAN, "--overhead-gb", "nan"], "--overhead-gb:"),
    ("custom gpu nan", lambda t: ["plan", "--target", "llama-3.1-8b", "--method", "ngram", "--gpu-memory-gb", "nan",
                                  "--gpu-bandwidth-tbs", "3", "--gpu-tflops", "900"], "--gpu-memory-gb:"),
    ("huge context", lambda t: [*PLAN, "--context", "9" * 400], "--context:"),
    ("target tp zero", lambda t: [*PLAN, "--target-tp", "0"], "--target-tp:"),
    ("serve port out of range", lambda t: ["serve", "--port", "70000", "--print-command"], "--port:"),
    ("serve ready timeout nan", lambda t: ["serve", "--ready-timeout", "nan", "--print-command"], "--ready-timeout:"),
    ("yaml rate tiny", lambda t: ["run", put(t / "e.yaml", EXPERIMENT + "loads: {rate: [1e-9]}\n")], "loads.rate[0]:"),
    ("yaml memory inf", lambda t: ["run", put(t / "e.yaml", EXPERIMENT + "loads: {concurrency: [1]}\nmemory: "
                                               "{device_gb: .inf, target_weights_gb: 1}\n")], "memory.device_gb:"),
    ("yaml temperature nan", lambda t: ["run", put(t / "e.yaml", EXPERIMENT.replace("structured}", "structured, "
                                                   "temperatures: 'nan'}") + "loads: {concurrency: [1]}\n")],
     "workloads[0].temperatures:"),
    ("yaml impossible date", lambda t: ["run", put(t / "e.yaml", EXPERIMENT + "loads: {concurrency: [1]}\n"
                                                   "seed: 2024-02-30\n")], "{tmp}/e.yaml:"),
    # flags typer cannot parse
    ("not a number", lambda t: [*BENCH, "--rate", "abc"], "Invalid value for '--rate'"),
    ("unknown option", lambda t: ["plan", "--nosuch", "1"], "No such option"),
]


@pytest.mark.parametrize("build, starts", [(build, starts) for _, build, starts in CASES],
                         ids=[case for case, _, _ in CASES])
def test_bad_input_is_one_line_naming_what_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      build: Callable[[Path], list[str]], starts: str) -> None:
    monkeypatch.chdir(tmp_path)   # default output directories land here
    result = CliRunner().invoke(app, build(tmp_path))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {starts.format(tmp=tmp_path)}"), lines[0]
    assert not list(tmp_path.glob("specwise-runs/*")), "a rejected input left an output directory"


def test_a_bug_is_one_line_internal_error_exit_1_and_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch
                                                                              ) -> None:
    import specwise.cli.plan

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(specwise.cli.plan, "build_plan", broken)
    result = CliRunner().invoke(app, PLAN)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip().splitlines() == [
        "error: internal error: KeyError: 'oops'; rerun with --debug for the traceback and report it"]
    debug = CliRunner().invoke(app, ["--debug", *PLAN])
    assert isinstance(debug.exception, KeyError)


def _validation_error() -> Exception:
    from pydantic import BaseModel, ValidationError

    class Limits(BaseModel):
        tpot_ms: float

    try:
        Limits.model_validate({"tpot_ms": "fast"})
    except ValidationError as exc:
        return exc
    raise AssertionError


@pytest.mark.parametrize("raised, line", [
    (lambda: PermissionError(13, "Permission denied", "/srv/out/summary.json"),
     "error: '/srv/out/summary.json': Permission denied; check the path, its permissions and the free space"),
    (lambda: b"\xff".decode(), "error: input: a file is not UTF-8 text; save it as UTF-8"),
    (lambda: "é".encode("ascii"), "error: input: 'é' cannot be sent: not ASCII; use ASCII characters only"),
    (lambda: RecursionError("maximum recursion depth exceeded"), "error: input: nested too deeply; flatten it"),
    (lambda: __import__("httpx").InvalidURL("Invalid port: 'x'"),
     "error: --url: Invalid port: 'x'; write it like http://127.0.0.1:8000"),
    (_validation_error, "error: tpot_ms: Input should be a valid number, unable to parse string as a number; "
                        "check the input"),
])
def test_what_no_check_foresaw_is_still_one_line_at_the_edge(monkeypatch: pytest.MonkeyPatch,
                                                            raised: Callable[[], object], line: str) -> None:
    import specwise.cli.plan

    def failing(*args: object, **kwargs: object) -> None:
        error = raised()   # some raise while being built (a decode), the others are returned
        raise error  # type: ignore[misc]

    monkeypatch.setattr(specwise.cli.plan, "build_plan", failing)
    result = CliRunner().invoke(app, PLAN)
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [line]


def test_markup_in_a_value_is_printed_as_typed() -> None:
    result = CliRunner().invoke(app, [*PLAN, "--target", "[bold]x[/]"])
    assert result.exit_code == 2 and "'[bold]x[/]'" in result.stderr


def no_traceback(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
                    st.sampled_from(["nan", "inf", "-inf", "1e309", "1e-300", "0", "-0", ""]))
TEXT = st.text(max_size=40)
ANY = st.one_of(NUMBERS, TEXT)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(option=st.sampled_from(["--gpus", "--context", "--k", "--alpha", "--overhead-gb", "--gpu-memory-utilization",
                               "--input-len", "--target-quant", "--kv-cache-dtype", "--vllm-version", "--target"]),
       value=ANY)
def test_plan_options_never_raise(option: str, value: str) -> None:
    no_traceback([*PLAN, option, value])


@FAST
@given(option=st.sampled_from(["--rate", "--concurrency", "--requests", "--duration", "--burstiness", "--max-tokens",
                               "--temperatures", "--timeout", "--scrape-interval", "--slo-ttft-ms", "--url",
                               "--dataset", "--warmup", "--max-in-flight", "--api"]),
       value=ANY)
def test_bench_options_never_raise(tmp_path_factory: pytest.TempPathFactory, option: str, value: str) -> None:
    # Whatever passes validation meets the dead port; nothing is written before the server answers.
    base = {"--url": DEAD, "--requests": "1", "--timeout": "2", "--out": str(tmp_path_factory.mktemp("run") / "r")}
    if option != "--rate":
        base["--concurrency"] = "1"
    base[option] = value
    no_traceback(["bench", *(part for pair in base.items() for part in pair)])


@FAST
@given(option=st.sampled_from(["--k", "--port", "--max-model-len", "--kv-cache-gb", "--ready-timeout", "--mode",
                               "--dtype", "--vllm-version"]), value=ANY)
def test_serve_print_command_options_never_raise(option: str, value: str) -> None:
    no_traceback(["serve", "--print-command", option, value])


@FAST
@given(temperatures=st.lists(st.tuples(NUMBERS, NUMBERS), min_size=1, max_size=4))
def test_experiment_temperatures_never_raise(tmp_path_factory: pytest.TempPathFactory,
                                             temperatures: list[tuple[str, str]]) -> None:
    mix = ",".join(f"{t}:{w}" for t, w in temperatures)
    path = put(tmp_path_factory.mktemp("exp") / "e.yaml", EXPERIMENT.replace("structured}", f"structured, "
                                                                             f"temperatures: {json.dumps(mix)}}}")
               + "loads: {concurrency: [1]}\n")
    no_traceback(["run", path, "--out", str(tmp_path_factory.mktemp("out") / "x")])
