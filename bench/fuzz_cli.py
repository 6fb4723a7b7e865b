"""Feed every command of the CLI bad input and count how it ends: a clean one-line error (exit 2, one stderr
line starting "error:"), another exit, or a traceback (the target is 0).

The inputs are generated, not listed: for each command × each option, the bad values of the option's kind
(numbers: nan, inf, -1, 0, 1e309, huge ints, text; files: missing, directories, non-UTF-8, unreadable,
binary, deeply nested JSON; output directories: existing files, paths under a file, too long, unwritable;
URLs: bad ports, schemes, brackets), and for the commands that read a file or a directory, corrupted ones.
Everything runs in-process through typer's CliRunner, in a scratch directory. Nothing reaches a server:
URLs point at a dead loopback port, and starting vLLM (or building the embedded pair) is trapped and counted
as "launch" (also a target of 0), so `serve`, `run` and `demo` are fed only what must be rejected first.

Run: PYTHONPATH=src .venv/bin/python bench/fuzz_cli.py [--show N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

import specwise.engine
import specwise.engine.pair
import specwise.engine.server  # noqa: F401  (loads the module whose VllmServer is trapped below)
from specwise.cli import app

DEAD_URL = "http://127.0.0.1:9"   # the discard port: nothing listens, so a connection is refused at once
CASE_LIMIT_S = 5.0


class WouldLaunch(BaseException):
    """Raised where vLLM would start or the embedded pair would be built; BaseException, so no handler of the
    CLI can turn it into an error line."""


class TooSlow(BaseException):
    pass


# ---- bad values, by the kind of option ---------------------------------------------------------------------

FLOATS = ["nan", "-nan", "inf", "-inf", "-1", "0", "1e309", "1e-300", "", "abc", "1" + "0" * 400, "0x10"]
INTS = ["-1", "0", "9" * 40, "9" * 5000, "", "abc", "1.5", "nan", "-99999999999"]
TEXTS = ["", " ", "abc", "\x00", "a\nb", "[bold]x[/]", "é" * 3, "x" * 10_000]
TEMPERATURE_MIXES = ["nan", "0:nan", "0:inf", "inf", "-1", "0:0", "0:-1", ",", "1:abc", "0:1e308,1:1e308",
                     "1e309", ",".join(f"{t / 100}:1" for t in range(200)), "0.1:60:40"]
URLS = ["http://127.0.0.1:abc", "http://127.0.0.1:99999", "http://127.0.0.1:-1", "htp://127.0.0.1:9", "abc", "",
        "http://", "http://[::1", "http://127.0.0.1:9/ x", "http://127.0.0.1:9\n", "127.0.0.1:9", "//127.0.0.1:9"]


@dataclass
class Files:
    """The scratch files and directories the cases point at."""

    root: Path

    def path(self, name: str) -> Path:
        return self.root / name

    def write(self, name: str, data: str | bytes) -> str:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    def inputs(self) -> list[str]:
        """Bad files where a file is read."""
        unreadable = self.write("unreadable.txt", "secret")
        os.chmod(unreadable, 0)   # root reads it anyway; everyone else gets EACCES
        return [str(self.path("missing.txt")), str(self.root), self.write("latin1.txt", "caf\xe9\n".encode("latin-1")),
                unreadable, self.write("empty.txt", ""), self.write("deep.json", "[" * 100_000 + "]" * 100_000),
                self.write("garbage.bin", bytes(range(256)) * 64), str(self.root / ("n" * 300)), "",
                self.write("nul.txt", "\x00\x00\x00")]

    def outputs(self) -> list[str]:
        """Bad directories where one is written: all must be refused before any work."""
        existing = self.write("an-existing-file", "x")
        return [existing, f"{existing}/below", str(self.root / ("o" * 300)), "/proc/specwise-out/x",
                "/dev/null"]

    def model_dirs(self) -> list[str]:
        """Hugging Face model directories with a malformed config.json."""
        good = {"model_type": "llama", "num_attention_heads": 32, "hidden_size": 4096, "num_hidden_layers": 32,
                "intermediate_size": 14336, "vocab_size": 128256, "num_key_value_heads": 8}
        edits = {"string-heads": {"num_attention_heads": "32"}, "zero-heads": {"num_attention_heads": 0},
                 "negative-layers": {"num_hidden_layers": -4}, "list-vocab": {"vocab_size": [1, 2]},
                 "huge-hidden": {"hidden_size": 10 ** 30}, "float-inter": {"intermediate_size": 1.5},
                 "null-layers": {"num_hidden_layers": None}, "bool-heads": {"num_attention_heads": True},
                 "list-type": {"model_type": ["llama"]}, "text-config": {"text_config": "x"},
                 "quant": {"quantization_config": "int4"}, "moe-bad": {"num_local_experts": 8,
                                                                        "num_experts_per_tok": "two"},
                 "window": {"sliding_window": 4096, "sliding_window_pattern": "six"}}
        def model(name: str, config: str | bytes) -> str:
            return str(Path(self.write(f"models/{name}/config.json", config)).parent)

        self.write("models/bad-tokenizer/tokenizer.json", "[1, 2]")
        return [*(model(name, json.dumps({**good, **edit})) for name, edit in edits.items()),
                model("truncated", json.dumps(good)[:40]), model("bad-tokenizer", json.dumps(good)),
                model("latin1", "{\"model_type\": \"llam\xe9\"}".encode("latin-1")),
                self.write("models/a-string.json", json.dumps("llama")),
                self.write("models/a-list.json", json.dumps([good])),
                self.write("models/nan.json", json.dumps({**good, "hidden_size": float("nan")}))]

    def datasets(self) -> list[str]:
        return [self.write("data/no-prompt.jsonl", '{"id": 1}\n'), self.write("data/number.jsonl", '{"prompt": 5}\n'),
                self.write("data/list-row.jsonl", "[1]\n"),
                self.write("data/sharegpt-bad.json", '[{"conversations": 5}]'),
                self.write("data/sharegpt-num.json", '[{"conversations": [{"from": "human", "value": 7}]}]'),
                self.write("data/torn.jsonl", '{"prompt": "a"}\n{"prom'), self.write("data/nothing.jsonl", "\n\n")]

    def api_keys(self) -> list[str]:
        return [self.write("keys/non-ascii", "sk-é\n"), self.write("keys/control", "sk-\x01x\n"),
                self.write("keys/multiline", "sk-a\nsk-b\n"), self.write("keys/huge", "k" * 100_000)]

    def run_dirs(self) -> list[str]:
        """Bench run directories, each broken in one way."""
        manifest = {"specwise_version": "0.1.0", "started_at": "2026-01-01T00:00:00+00:00", "url": DEAD_URL,
                    "api": "completions", "model": "m", "seed": 0, "config": {"k": 4}, "hardware": {}}
        text = json.dumps(manifest)
        broken: dict[str, dict[str, str | bytes]] = {
            "truncated": {"manifest.json": text[: len(text) // 2]},
            "wrong-types": {"manifest.json": json.dumps({**manifest, "seed": "zero", "config": []})},
            "a-list": {"manifest.json": "[]"},
            "garbage": {"manifest.json": bytes(range(256))},
            "deep": {"manifest.json": "[" * 100_000},
            "config-types": {"manifest.json": json.dumps({**manifest, "config": {"slo_ms": "fast", "k": "four"}})},
            "slo-values": {"manifest.json": json.dumps({**manifest, "config": {"slo_ms": {"tpot": "x"}}})},
            "requests-garbage": {"manifest.json": text, "requests.jsonl": bytes(range(256)) * 8},
            "requests-wrong": {"manifest.json": text, "requests.jsonl": '{"index": "a"}\n[1]\n"x"\n'},
            "metrics-garbage": {"manifest.json": text, "metrics.jsonl": '{"t_s": "x"}\n\xff\n'},
            "empty": {"manifest.json": ""},
            "missing": {},
        }
        dirs = []
        for name, files in broken.items():
            directory = self.path(f"runs/{name}")
            directory.mkdir(parents=True, exist_ok=True)
            for file, data in files.items():
                self.write(f"runs/{name}/{file}", data)
            dirs.append(str(directory))
        (self.path("runs/requests-dir") / "requests.jsonl").mkdir(parents=True, exist_ok=True)
        self.write("runs/requests-dir/manifest.json", text)
        (self.path("runs/manifest-dir") / "manifest.json").mkdir(parents=True, exist_ok=True)
        return [*dirs, str(self.path("runs/requests-dir")), str(self.path("runs/manifest-dir"))]

    def good_experiment(self) -> str:
        """An experiment file `run` accepts; its servers are URLs on a dead port, so it fails at the first cell."""
        return self.write("exp/good.yaml", f"name: x\nservers:\n  - {{name: base, role: baseline, url: '{DEAD_URL}'}}\n"
                          f"  - {{name: cand, url: '{DEAD_URL}'}}\nworkloads:\n  - {{name: w, dataset: structured}}\n"
                          "loads: {concurrency: [1]}\n")

    def experiment_files(self) -> list[str]:
        """Experiment YAML files, each broken in one way (the good one and an edit that YAML merges over it)."""
        good = Path(self.good_experiment()).read_text()
        edits = {"rate-tiny": "loads: {rate: [1e-9]}", "rate-nan": "loads: {rate: [.nan]}",
                 "conc-huge": "loads: {concurrency: [100000000000000000000]}", "conc-zero": "loads: {concurrency: [0]}",
                 "mem-inf": "memory: {device_gb: .inf, target_weights_gb: 1}",
                 "mem-nan": "memory: {device_gb: 80, target_weights_gb: .nan}", "slo-inf": "slo: {p99_tpot_ms: .inf}",
                 "temps-nan": "workloads:\n  - {name: w, dataset: structured, temperatures: 'nan'}",
                 "dataset-binary": f"workloads:\n  - {{name: w, dataset: '{self.path('garbage.bin')}'}}",
                 "bad-port": "servers:\n  - {name: base, role: baseline, url: 'http://127.0.0.1:abc'}\n"
                             f"  - {{name: cand, url: '{DEAD_URL}'}}",
                 "key-file": f"servers:\n  - {{name: base, role: baseline, url: '{DEAD_URL}', api_key_file: "
                             f"'{self.path('latin1.txt')}'}}\n  - {{name: cand, url: '{DEAD_URL}'}}",
                 "bad-date": "seed: 2024-02-30", "huge-int": "seed: " + "9" * 5000, "requests-str": "requests: many",
                 "name-long": "name: " + "n" * 300, "reps-huge": "repetitions: 1000000000"}
        files = [self.write(f"exp/{name}.yaml", good + edit + "\n") for name, edit in edits.items()]
        files += [self.write("exp/not-yaml.yaml", "servers: [\n"), self.write("exp/a-list.yaml", "- 1\n"),
                  self.write("exp/nested.yaml", "[" * 20_000 + "]" * 20_000),
                  self.write("exp/big.yaml", "name: x\n" + "# padding\n" * 200_000),
                  self.write("exp/aliases.yaml", "a: &a [1, 2]\nb: [*a, *a, *a]\n")]
        return files

    def experiment_dirs(self) -> list[str]:
        """Experiment directories (as `specwise run` writes them), each broken in one way."""
        config = {"name": "x", "servers": [{"name": "base", "role": "baseline", "url": DEAD_URL},
                                           {"name": "cand", "url": DEAD_URL}],
                  "workloads": [{"name": "w"}], "loads": {"concurrency": [1]}}
        run = self.run_dirs()[0]
        broken: dict[str, dict[str, str | bytes]] = {
            "truncated": {"experiment.json": json.dumps(config)[:30]},
            "wrong-types": {"experiment.json": json.dumps({**config, "loads": {"concurrency": ["a"]}})},
            "garbage": {"experiment.json": bytes(range(256))},
            "nan-memory": {"experiment.json": json.dumps(config)[:-1]
                           + ', "memory": {"device_gb": NaN, "target_weights_gb": 1}}'},
            "servers-garbage": {"experiment.json": json.dumps(config), "servers.json": "{\"base\": 5}"},
            "servers-binary": {"experiment.json": json.dumps(config), "servers.json": b"\xff\xfe"},
            "no-cells": {"experiment.json": json.dumps(config)},
            "bad-cell": {"experiment.json": json.dumps(config),
                         "cells/w/c1/base/rep0/manifest.json": Path(run, "manifest.json").read_bytes()},
            "odd-cell-name": {"experiment.json": json.dumps(config), "cells/w/c1/base/repX/manifest.json": "{}"},
            "missing": {},
        }
        dirs = []
        for name, files in broken.items():
            directory = self.path(f"experiments/{name}")
            directory.mkdir(parents=True, exist_ok=True)
            for file, data in files.items():
                self.write(f"experiments/{name}/{file}", data)
            dirs.append(str(directory))
        return dirs


# ---- the cases -------------------------------------------------------------------------------------------------

def option_cases(command: list[str], base: list[str], options: dict[str, list[str]]) -> Iterator[list[str]]:
    """`base` with one option set to each bad value (replacing the option where `base` has it)."""
    for option, values in options.items():
        rest = list(base)
        if option in rest:
            i = rest.index(option)
            del rest[i:i + 2]
        for value in values:
            yield [*command, *rest, option, value]


def cases(files: Files) -> list[tuple[str, list[str]]]:
    inputs, outputs, models = files.inputs(), files.outputs(), files.model_dirs()
    runs, experiments, exp_files = files.run_dirs(), files.experiment_dirs(), files.experiment_files()
    all_cases: list[tuple[str, list[str]]] = []

    def add(name: str, generated: Iterator[list[str]] | list[list[str]]) -> None:
        all_cases.extend((name, args) for args in generated)

    plan = ["--target", "llama-3.1-70b", "--draft", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "2"]
    custom = ["--target", "llama-3.1-8b", "--method", "ngram", "--gpu-memory-gb", "80", "--gpu-bandwidth-tbs", "3",
              "--gpu-tflops", "900"]
    add("plan", option_cases(["plan"], plan, {
        **{o: INTS for o in ("--gpus", "--target-tp", "--draft-tp", "--context", "--input-len", "--output-len", "--k")},
        **{o: FLOATS for o in ("--gpu-memory-utilization", "--overhead-gb", "--alpha")},
        **{o: TEXTS for o in ("--target", "--draft", "--gpu", "--target-quant", "--draft-quant", "--kv-cache-dtype",
                              "--method", "--vllm-version")},
        "--acceptance-from": [*inputs, *runs]}))
    add("plan", option_cases(["plan"], custom, {o: FLOATS for o in ("--gpu-memory-gb", "--gpu-bandwidth-tbs",
                                                                    "--gpu-tflops", "--gpu-8bit-tflops")}))
    add("plan", option_cases(["plan"], plan, {"--target": [*models, *inputs], "--draft": models}))

    serve = ["--print-command"]   # never without it: the rest would build the pair and start vLLM
    add("serve", option_cases(["serve"], serve, {
        **{o: INTS for o in ("--k", "--port", "--max-model-len", "--kv-cache-gb")},
        "--ready-timeout": FLOATS,
        **{o: TEXTS for o in ("--mode", "--host", "--dtype", "--vllm-version")},
        "--model": [*TEXTS, *models], "--log-dir": outputs}))
    add("serve", [["serve", "--model", m, "--draft", d, "--print-command"] for m, d in (("", ""), ("/t", "\x00"))])
    # Without --print-command: only what must be refused before the pair is built (the trap counts the rest).
    add("serve", option_cases(["serve"], [], {"--mode": TEXTS, "--k": INTS, "--ready-timeout": FLOATS,
                                              "--log-dir": outputs}))

    bench = ["--url", DEAD_URL, "--concurrency", "1", "--requests", "2", "--timeout", "2"]
    add("bench", option_cases(["bench"], bench, {
        "--url": URLS, "--temperatures": [*TEMPERATURE_MIXES, *TEXTS],
        **{o: INTS for o in ("--concurrency", "--requests", "--warmup", "--max-in-flight", "--max-tokens", "--k",
                             "--seed")},
        **{o: FLOATS for o in ("--burstiness", "--duration", "--slo-ttft-ms", "--slo-tpot-ms", "--slo-e2e-ms",
                               "--scrape-interval", "--timeout")},
        **{o: TEXTS for o in ("--api", "--arrivals", "--model", "--api-key-env")},
        "--dataset": [*TEXTS, *inputs, *files.datasets()], "--api-key-file": [*inputs, *files.api_keys()],
        "--out": outputs}))
    rate = ["--url", DEAD_URL, "--rate", "1", "--requests", "2"]
    add("bench", option_cases(["bench"], rate, {"--rate": [*FLOATS, "1e-4"], "--burstiness": ["1e-300", "1e300"]}))

    add("summarize", [["summarize", d] for d in [*runs, *inputs]])
    add("summarize", [["summarize", d, "--json"] for d in runs])
    add("report", [["report", d] for d in [*experiments, *runs, *inputs]])

    good_experiment = files.good_experiment()
    add("run", [["run", f] for f in [*exp_files, *inputs]])
    add("run", [["run", good_experiment, "--out", o] for o in outputs])
    add("run", [["run"], ["run", good_experiment, "--quick"]])
    add("demo", [["demo", "--out", o] for o in outputs])
    watch = ["--once", "--interval", "0.1"]
    add("watch", [["watch", url, *watch] for url in URLS])
    add("watch", option_cases(["watch", DEAD_URL], watch, {
        "--interval": FLOATS, "--break-even": FLOATS, "--record": outputs,
        "--api-key-file": [*inputs, *files.api_keys()], "--api-key-env": TEXTS}))
    add("watch", [["watch", DEAD_URL, "--json"], ["watch"]])
    add("rules", option_cases(["rules"], [], {
        **{o: FLOATS for o in ("--break-even", "--tpot-p99-ms")}, "--k": INTS,
        "--from": [*experiments, *runs, *inputs], "--out": outputs, "--dashboard": outputs}))
    add("(none)", [["--bogus"], ["nosuchcommand"], ["plan", "--nosuchoption", "1"]])
    return all_cases


# ---- running them ----------------------------------------------------------------------------------------------

@contextmanager
def nothing_starts() -> Iterator[None]:
    """Trap every way a command could build the embedded pair or start vLLM."""
    def trap(*args: object, **kwargs: object) -> None:
        raise WouldLaunch

    import specwise.cli.serve
    targets = [(specwise.engine, "require_vllm"), (specwise.cli.serve, "require_vllm"),
               (specwise.engine.pair, "ensure_pair"), (specwise.engine.server.VllmServer, "start")]
    saved = [(obj, name, getattr(obj, name)) for obj, name in targets]
    for obj, name in targets:
        setattr(obj, name, trap)
    try:
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def outcome(args: list[str]) -> tuple[str, str]:
    """('clean' | 'other' | 'traceback' | 'launch' | 'slow', what it printed or raised)."""
    def too_slow(signum: int, frame: object) -> None:
        raise TooSlow

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, CASE_LIMIT_S)
    try:
        result = CliRunner().invoke(app, args, catch_exceptions=True)
    except WouldLaunch:
        return "launch", "reached the point of starting vLLM"
    except TooSlow:
        return "slow", f"still running after {CASE_LIMIT_S:g} s"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "traceback", f"{type(result.exception).__name__}: {result.exception}"[:200]
    lines = result.stderr.strip().splitlines()
    if result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"):
        return "clean", lines[0]
    first = (lines or result.stdout.strip().splitlines() or [""])[0]
    return "other", f"exit {result.exit_code}: {first[:160]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", type=int, default=3, help="examples to print per outcome other than clean")
    parser.add_argument("--only", nargs="*", default=None, help="only these commands")
    options = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="specwise-fuzz-") as scratch:
        cwd = os.getcwd()
        os.chdir(scratch)   # default output directories land in the scratch directory
        try:
            with nothing_starts():
                todo = [(c, a) for c, a in cases(Files(Path(scratch))) if not options.only or c in options.only]
                results = [(command, args, *outcome(args)) for command, args in todo]
        finally:
            os.chdir(cwd)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for command, _args, kind, _text in results:
        counts[command][kind] += 1
    kinds = ("clean", "other", "traceback", "launch", "slow")
    header = f"{'command':<10} {'inputs':>6} {'clean one-line (exit 2)':>24} {'other exits':>11} {'tracebacks':>10} " \
             f"{'launch':>6} {'slow':>4}"
    print(header)
    print("-" * len(header))
    total: Counter[str] = Counter()
    for command, count in counts.items():
        total.update(count)
        print(f"{command:<10} {sum(count.values()):>6} {count['clean']:>24} {count['other']:>11} "
              f"{count['traceback']:>10} {count['launch']:>6} {count['slow']:>4}")
    print("-" * len(header))
    print(f"{'total':<10} {sum(total.values()):>6} {total['clean']:>24} {total['other']:>11} {total['traceback']:>10} "
          f"{total['launch']:>6} {total['slow']:>4}")
    print(f"\n{time.perf_counter() - started:.0f} s")
    for kind in kinds[1:]:
        shown = [(a, t) for _c, a, k, t in results if k == kind][:options.show]
        for args, text in shown:
            print(f"{kind}: {' '.join(a if len(a) < 60 else a[:57] + '…' for a in args)!r}\n    {text}")
    raise SystemExit(1 if total["traceback"] or total["launch"] or total["slow"] else 0)


if __name__ == "__main__":
    main()
