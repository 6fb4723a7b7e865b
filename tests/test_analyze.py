"""`specwise analyze`: constructed logs with known mixes must come back as they were built — temperature
mix, echo, structured share, lengths, arrivals — with the recommendation the guide gives for each; bad
lines are counted by number, never fatal; the log's text stays out of the output unless asked; the emitted
workload and experiment are what `bench` and `run` read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from traffic_logs import write_log

from specwise.verdict.method import Method, recommend
from specwise.workload import Profiler, load_dataset, parse_temperature_mix, read_log
from specwise.workload.traffic import arrivals, overlap, words


def profile_of(path: Path, **kw):
    p = Profiler(str(path), "jsonl", **kw)
    for item in read_log(path):
        p.add(item)
    return p.profile()


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specwise", "analyze", *args], capture_output=True, text=True,
                          timeout=120)


def test_an_echo_heavy_summarization_log_calls_for_ngram(tmp_path: Path) -> None:
    write_log(tmp_path / "log.jsonl", [("summarization", 0.3, 200)])
    p = profile_of(tmp_path / "log.jsonl")
    assert p.requests == 200 and p.bad_lines == 0
    assert p.temperature.mix == [(0.3, 1.0)] and p.temperature.homogeneity == 1.0
    assert p.overlap.p10 > 0.9           # every output is three of the prompt's sentences
    advice = recommend(p)
    assert advice.method is Method.NGRAM and not advice.separate_deployments
    assert "echo" in advice.reasons[0]


def test_code_at_low_temperature_calls_for_a_draft_model(tmp_path: Path) -> None:
    write_log(tmp_path / "log.jsonl", [("code", 0.2, 150)])
    p = profile_of(tmp_path / "log.jsonl")
    assert p.temperature.mix == [(0.2, 1.0)] and p.temperature.median == 0.2
    assert p.structured_share == 1.0 and p.overlap.p90 < 0.3
    advice = recommend(p)
    assert advice.method is Method.DRAFT
    assert any("structured" in r for r in advice.reasons)


def test_chat_at_temperature_one_calls_for_none(tmp_path: Path) -> None:
    write_log(tmp_path / "log.jsonl", [("chat", 1.0, 120)], shape="body")
    p = profile_of(tmp_path / "log.jsonl")
    assert p.temperature.mix == [(1.0, 1.0)] and p.output_tokens is None   # request bodies alone: no outputs
    advice = recommend(p)
    assert advice.method is Method.NONE and "1 > 0.7" in advice.reasons[0]


def test_a_mixed_log_is_split_into_classes_with_a_deployment_each(tmp_path: Path) -> None:
    write_log(tmp_path / "log.jsonl", [("code", 0.2, 120), ("chat", 1.0, 60), ("summarization", 0.0, 20)],
              shape="batch")
    p = profile_of(tmp_path / "log.jsonl")
    mix = dict(p.temperature.mix)
    assert mix == pytest.approx({0.0: 0.1, 0.2: 0.6, 1.0: 0.3})
    assert p.temperature.homogeneity == pytest.approx(0.7)
    advice = recommend(p)
    assert advice.separate_deployments
    methods = {c.name: c.method for c in advice.classes}
    assert methods == {"T ≤ 0.5": Method.DRAFT, "T > 0.7": Method.NONE, "T ≤ 0.5, echoes its prompt": Method.NGRAM}
    assert {c.name: c.requests for c in p.classes} == {"T ≤ 0.5": 120, "T > 0.7": 60, "T ≤ 0.5, echoes its prompt": 20}
    assert "mixed" in " ".join(advice.reasons)


def test_lengths_and_tokens_come_from_usage(tmp_path: Path) -> None:
    rows = write_log(tmp_path / "log.jsonl", [("chat", 0.7, 101)], outputs=(10, 90))
    p = profile_of(tmp_path / "log.jsonl")
    outs = sorted(r["output_tokens"] for r in rows)
    assert p.length_unit == "tokens" and p.output_tokens.p50 == outs[50]
    assert p.output_tokens.count == 101


def test_a_tokenizer_counts_tokens_and_ngrams_in_them(tmp_path: Path) -> None:
    write_log(tmp_path / "log.jsonl", [("summarization", 0.0, 30)], shape="gateway")
    p = profile_of(tmp_path / "log.jsonl", tokenize=lambda text: [ord(c) for c in text])   # one token per char
    # usage counts win over the tokenizer's where the log has them; the prompt's are chars // 4
    assert p.prompt_tokens.p50 == pytest.approx(p.prompt_chars.p50 / 4, abs=1)
    assert p.overlap.p10 > 0.9


def test_arrivals_recover_rate_and_burstiness() -> None:
    import random

    for shape in (1.0, 0.25):
        rng, t, times = random.Random(3), 0.0, []
        for _ in range(5000):
            times.append(t)
            t += rng.gammavariate(shape, 1 / (4.0 * shape))
        a = arrivals(times)
        assert a.mean_rate == pytest.approx(4.0, rel=0.05)
        assert a.burstiness == pytest.approx(shape, rel=0.15)
        assert a.peak_rate > a.mean_rate


def test_overlap_counts_output_ngrams_found_in_the_prompt() -> None:
    prompt = words("the cat sat on the mat today")
    assert overlap(prompt, words("the cat sat on the mat")) == 1.0
    assert overlap(prompt, words("a dog ran far away now")) == 0.0
    assert overlap(prompt, words("the cat sat by a tree")) == pytest.approx(1 / 4)
    assert overlap(prompt, words("hi")) is None


def test_ttft_bound_latency_is_named(tmp_path: Path) -> None:
    write_log(tmp_path / "log.jsonl", [("code", 0.0, 40)], ttft_share=0.8)
    p = profile_of(tmp_path / "log.jsonl")
    assert p.latency.dominated_by == "ttft" and p.latency.ttft_share.p50 == pytest.approx(0.8)
    assert any("TTFT-bound" in r for r in recommend(p).reasons)


def test_bad_lines_are_counted_by_number_and_never_fatal(tmp_path: Path) -> None:
    write_log(tmp_path / "log.jsonl", [("code", 0.2, 10)])
    good = (tmp_path / "log.jsonl").read_text().splitlines()
    bad = ["{not json", json.dumps([1, 2]), json.dumps({"request": {"temperature": "hot", "prompt": "x"}}),
           json.dumps({"response": {"choices": []}}), "\x00\x01 binary"]
    lines = good[:3] + bad[:2] + good[3:6] + bad[2:] + good[6:]
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    out = analyze(str(tmp_path / "mixed.jsonl"), "--json")
    assert out.returncode == 0, out.stderr
    profile = json.loads(out.stdout)["profile"]
    assert profile["requests"] == 10 and profile["bad_lines"] == 5
    assert [n for n, _ in profile["bad_examples"]] == [4, 5, 9, 10, 11]
    assert "not JSON" in profile["bad_examples"][0][1] and "temperature" in profile["bad_examples"][2][1]


def test_a_log_with_nothing_readable_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "log.jsonl").write_text("nope\n{}\n")
    out = analyze(str(tmp_path / "log.jsonl"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "no readable request" in out.stderr and "line 1" in out.stderr


def test_the_logs_text_stays_out_of_the_output_unless_asked(tmp_path: Path) -> None:
    (tmp_path / "log.jsonl").write_text("".join(
        json.dumps({"request": {"prompt": f"SECRET-PROMPT-{i} please summarize", "temperature": 0},
                    "response": {"choices": [{"text": f"SECRET-OUTPUT-{i} done"}]}}) + "\n" for i in range(20)))
    work = tmp_path / "w.json"
    out = analyze(str(tmp_path / "log.jsonl"), "--emit-workload", str(work), "--samples", "5")
    assert out.returncode == 0, out.stderr
    js = analyze(str(tmp_path / "log.jsonl"), "--json")
    for text in (out.stdout + out.stderr, js.stdout, work.read_text()):
        assert "SECRET" not in text
    asked = analyze(str(tmp_path / "log.jsonl"), "--json", "--include-samples", "--emit-workload", str(work))
    assert "SECRET-PROMPT" in asked.stdout and "SECRET-PROMPT" in work.read_text()


def test_the_emitted_workload_and_experiment_are_what_bench_and_run_read(tmp_path: Path) -> None:
    from specwise.experiment.config import load_config
    from specwise.workload import load_workload

    rows = write_log(tmp_path / "log.jsonl", [("code", 0.2, 80), ("chat", 1.0, 40)], rate=2.0, burstiness=0.5)
    out = analyze(str(tmp_path / "log.jsonl"), "--emit-workload", str(tmp_path / "w.json"), "--emit-experiment",
                  str(tmp_path / "exp.yaml"), "--samples", "60")
    assert out.returncode == 0, out.stderr
    assert "split the traffic" in out.stdout
    w = load_workload(tmp_path / "w.json")
    assert dict(parse_temperature_mix(w.temperatures)) == pytest.approx({0.2: 2 / 3, 1.0: 1 / 3}, abs=1e-4)
    assert w.arrivals.rate == pytest.approx(2.0, rel=0.3) and w.arrivals.burstiness < 1
    prompts = load_dataset(str(tmp_path / "w.json"))
    assert len(prompts) == 60 and all(p.max_tokens for p in prompts)
    assert {p.max_tokens for p in prompts} <= {r["output_tokens"] for r in rows}
    config = load_config(tmp_path / "exp.yaml")
    assert [s.launch.mode for s in config.servers] == ["baseline", "draft"]
    assert config.workloads[0].production_temperatures == w.temperatures
    assert config.loads.unit == "rate" and min(config.loads.levels) == pytest.approx(w.arrivals.rate, rel=0.01)


def test_sharegpt_files_and_run_directories_are_read(tmp_path: Path) -> None:
    convs = [{"id": str(i), "conversations": [{"from": "human", "value": f"question {i} about rivers"},
                                              {"from": "gpt", "value": f"an answer {i} about rivers and stones"}]}
             for i in range(50)]
    (tmp_path / "sg.json").write_text(json.dumps(convs))
    p = Profiler("sg", "sharegpt")
    for item in read_log(tmp_path / "sg.json"):
        p.add(item)
    prof = p.profile()
    assert prof.requests == 50 and prof.temperature.unset == 50   # ShareGPT keeps no temperature
    assert any("no temperature" in r for r in recommend(prof).reasons)
    run = next((Path(__file__).parent / "fixtures").rglob("requests.jsonl")).parent
    records = [json.loads(line) for line in (run / "requests.jsonl").read_text().splitlines() if line.strip()]
    measured = [r for r in records if not r["warmup"] and not r["error"]]
    p = Profiler("run", "specwise-run")
    for item in read_log(run):
        p.add(item)
    prof = p.profile()
    assert prof.requests == len(measured) and prof.bad_lines == 0
    assert dict(prof.temperature.mix) == pytest.approx(
        {t: sum(r["temperature"] == t for r in measured) / len(measured) for t in {r["temperature"] for r in measured}})


def test_a_real_tokenizer_counts_the_prompts_tokens(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from specwise.engine.pair import ensure_pair

    target = ensure_pair(lambda m: None).target
    tok = transformers.AutoTokenizer.from_pretrained(str(target))
    rows = write_log(tmp_path / "log.jsonl", [("chat", 0.5, 21)], shape="body")   # no usage: the tokenizer counts
    out = analyze(str(tmp_path / "log.jsonl"), "--json", "--tokenizer", str(target))
    assert out.returncode == 0, out.stderr
    profile = json.loads(out.stdout)["profile"]
    counts = sorted(len(tok.encode(r["prompt"], add_special_tokens=False)) for r in rows)
    assert profile["length_unit"] == "tokens" and profile["prompt_tokens"]["p50"] == counts[10]
    bad = analyze(str(tmp_path / "log.jsonl"), "--tokenizer", str(tmp_path))
    assert bad.returncode == 2 and "--tokenizer" in bad.stderr


def test_openai_batch_files_are_read_alone_and_joined(tmp_path: Path) -> None:
    """The Batch API's input lines carry the request; joined with the output lines on custom_id (as the
    README's jq line does), the responses' usage too. An output line alone is a response without its request."""
    inputs = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "m", "temperature": 0.2, "messages": [{"role": "user", "content": f"q {i}"}]}}
              for i in range(12)]
    outputs = [{"id": f"b{i}", "custom_id": f"r{i}", "response": {"status_code": 200, "body": {
        "choices": [{"message": {"content": "def f():\n    return 1\n"}}], "usage": {"completion_tokens": 10 + i}}}}
               for i in range(12)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in inputs))
    (tmp_path / "out.jsonl").write_text("".join(json.dumps(r) + "\n" for r in outputs))
    (tmp_path / "joined.jsonl").write_text("".join(json.dumps(a | b) + "\n" for a, b in zip(inputs, outputs)))
    alone = profile_of(tmp_path / "in.jsonl")
    assert alone.requests == 12 and alone.temperature.mix == [(0.2, 1.0)] and alone.output_tokens is None
    joined = profile_of(tmp_path / "joined.jsonl")
    assert joined.output_tokens.p50 == pytest.approx(15.5) and joined.structured_share == 1.0
    responses = profile_of(tmp_path / "out.jsonl")
    assert responses.requests == 0 and responses.bad_lines == 12 and "custom_id" in responses.bad_examples[0][1]


def test_a_replay_sends_each_logged_prompt_at_the_temperature_it_was_logged_at(tmp_path: Path) -> None:
    import itertools

    from specwise.workload import request_plan

    write_log(tmp_path / "log.jsonl", [("code", 0.2, 90), ("chat", 1.0, 45), ("summarization", 0.0, 15)])
    out = analyze(str(tmp_path / "log.jsonl"), "--emit-workload", str(tmp_path / "w.json"), "--samples", "60",
                  "--include-samples")
    assert out.returncode == 0, out.stderr
    prompts = load_dataset(str(tmp_path / "w.json"))
    by_temp = {t: sum(p.temperature == t for p in prompts) for t in (0.0, 0.2, 1.0)}
    assert by_temp == {0.0: 6, 0.2: 36, 1.0: 18}   # the sample is stratified by temperature, like the log
    mix = parse_temperature_mix(json.loads((tmp_path / "w.json").read_text())["temperatures"])
    plan = list(itertools.islice(request_plan(prompts, mix, seed=4), 120))
    assert all(p.prompt.temperature == p.temperature for p in plan)
    assert {t: sum(p.temperature == t for p in plan) for t in (0.0, 0.2, 1.0)} == {0.0: 12, 0.2: 72, 1.0: 36}
    code = {p.id for p in prompts if p.text.startswith("Write a function")}
    assert code and all(p.temperature == 0.2 for p in plan if p.prompt.id in code)


def _lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_hostile_fields_are_bad_lines_not_crashes(tmp_path: Path) -> None:
    good = {"request": {"prompt": "p", "temperature": 0}}
    huge = "1" + "0" * 400
    rows = [good, f'{{"request": {{"prompt": "x", "temperature": 0}}, "timestamp": {huge}, "latency_ms": {huge}}}',
            f'{{"request": {{"prompt": "x", "temperature": {huge}}}}}',
            '{"request": {"prompt": "x", "temperature": NaN}}', "[" * 100_000 + "]" * 100_000,
            {"request": {"prompt": "x", "temperature": "0.7"}},
            {"request": {"prompt": "x"}, "response": {"usage": {"completion_tokens": 10**30}}}]
    out = analyze(str(_lines(tmp_path / "log.jsonl", rows)), "--json")
    assert out.returncode == 0, out.stderr
    profile = json.loads(out.stdout)["profile"]
    assert profile["requests"] == 3 and profile["bad_lines"] == 4 and profile["output_tokens"] is None
    assert "0.7" not in json.dumps(profile["bad_examples"])   # the log's value is not quoted back


def test_hostile_run_directory_records_are_bad_lines(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    ok = {"temperature": 0.5, "sent_s": 1.0, "scheduled_s": 1.0, "end_s": 2.0, "chunk_s": [1.1], "output_tokens": 9}
    _lines(run / "requests.jsonl", [ok, [1, 2], ok | {"temperature": float("nan")}, ok | {"temperature": 1e308},
                                    ok | {"sent_s": "soon"}, ok | {"output_tokens": 10**400}])
    out = analyze(str(run), "--json", "--include-samples", "--emit-workload", str(tmp_path / "w.json"))
    assert out.returncode == 0, out.stderr
    profile = json.loads(out.stdout)["profile"]
    assert profile["requests"] == 2 and profile["bad_lines"] == 4
    # No text in a run directory: the workload's prompts are stand-ins, and say so.
    assert all(r["synthetic"] for r in json.loads((tmp_path / "w.json").read_text())["requests"])


def test_emitted_files_load_for_rare_many_and_sparse_temperatures(tmp_path: Path) -> None:
    from specwise.experiment.config import load_config
    from specwise.workload import load_workload

    rare = [{"request": {"prompt": "p", "temperature": 0}}] * 3000 + [{"request": {"prompt": "q", "temperature": 0.3}}]
    many = [{"request": {"prompt": "p", "temperature": round(0.05 * i, 2)}} for i in range(70) for _ in range(2)]
    sparse = [{"request": {"prompt": "p", "temperature": 0.2}, "timestamp": 1.7e9 + 12_000 * i} for i in range(50)]
    for name, rows in (("rare", rare), ("many", many), ("sparse", sparse)):
        log = _lines(tmp_path / f"{name}.jsonl", rows)
        w, e = tmp_path / f"{name}.json", tmp_path / f"{name}.yaml"
        out = analyze(str(log), "--emit-workload", str(w), "--emit-experiment", str(e))
        assert out.returncode == 0, (name, out.stderr)
        workload = load_workload(w)
        assert len(load_dataset(str(w))) >= 1 and load_config(e).workloads[0].temperatures == workload.temperatures
        if name == "rare":
            assert workload.temperatures == "0:3000,0.3:1"
        if name == "many":
            assert len(workload.temperatures.split(",")) == 64
        if name == "sparse":   # one request in 12 000 s: no rate to replay, the usual concurrency sweep instead
            assert workload.arrivals is None and load_config(e).loads.unit == "concurrency"


def test_band_edges_median_and_spread_agree(tmp_path: Path) -> None:
    log = _lines(tmp_path / "log.jsonl", [{"request": {"prompt": "p", "temperature": 0.72}}] * 50)
    p = profile_of(log)
    assert [c.name for c in p.classes] == ["0.5 < T ≤ 0.7"] and p.temperature.median == 0.7
    counts = [(0.0, 1), (0.1, 5), (1.0, 114)]   # exactly 5 % at or below 0.1
    log = _lines(tmp_path / "s.jsonl", [{"request": {"prompt": "p", "temperature": t}} for t, n in counts
                                        for _ in range(n)])
    assert profile_of(log).temperature.spread == pytest.approx(0.9)


def test_flat_records_keep_their_timings_and_coarse_clocks_give_no_burstiness(tmp_path: Path) -> None:
    import random

    rng, t, rows = random.Random(1), 1.7e9, []
    for _ in range(400):
        t += rng.expovariate(10.0)
        rows.append({"prompt": "p", "temperature": 0, "timestamp": t, "ttft_ms": 100, "latency_ms": 200})
    fine = profile_of(_lines(tmp_path / "fine.jsonl", rows))
    assert fine.latency is not None and fine.arrivals.burstiness == pytest.approx(1.0, rel=0.25)
    coarse = profile_of(_lines(tmp_path / "coarse.jsonl", [r | {"timestamp": int(r["timestamp"])} for r in rows]))
    assert coarse.arrivals.coarse_times and coarse.arrivals.burstiness is None
    assert coarse.arrivals.mean_rate == pytest.approx(fine.arrivals.mean_rate, rel=0.1)


def test_prose_with_a_colon_is_not_code_and_a_bom_is_read() -> None:
    from specwise.workload.traffic import is_structured

    assert not is_structured("Sure! Here is how:\n1. Open the box.\n2. Take it out.")
    assert is_structured("int main() {\n  return 0;\n}")


def test_a_sharegpt_file_with_a_bom_and_a_log_named_like_yaml(tmp_path: Path) -> None:
    convs = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a b c d"}]}
             for i in range(5)]
    (tmp_path / "sg.json").write_text("\ufeff" + json.dumps(convs, indent=2), encoding="utf-8")
    out = analyze(str(tmp_path / "sg.json"), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["profile"]["requests"] == 5, out.stderr
    log = _lines(tmp_path / "x\nrepetitions: 9\n#.jsonl", [{"request": {"prompt": "p", "temperature": 0}}] * 5)
    out = analyze(str(log), "--emit-workload", str(tmp_path / "w.json"), "--emit-experiment", str(tmp_path / "e.yaml"))
    assert out.returncode == 0, out.stderr
    from specwise.experiment.config import load_config
    assert load_config(tmp_path / "e.yaml").repetitions == 2
