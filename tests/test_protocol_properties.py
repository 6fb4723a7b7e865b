"""Property tests: whatever a server streams, `Stream.feed`/`finish` raise nothing but `Fault`, the counts they
keep are non-negative ints, and the record built from them validates. Also the pure pieces around them:
the token-count reconciliation, the bounded line splitter and the /metrics parser."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from specwise.load.protocol import Fault, LineSplitter, Stream, reconcile_tokens
from specwise.metrics import WATCHED, snapshot
from specwise.results import RequestRecord

FAST = settings(max_examples=150, deadline=None)

# Text as JSON can carry it: lone surrogates ("\ud800") included.
texts = st.text(st.characters(exclude_categories=()), max_size=8)
scalars = st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats() | texts
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


def _maybe(value: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly the right shape, else any JSON value at all in its place (wrong shapes compound over the levels)."""
    return st.one_of(value, value, value, json_values)


tokens = st.lists(texts.filter(bool), max_size=4)
counts = _maybe(st.integers(-5, 10**12))


def choices(api: str, maybe: Callable[[st.SearchStrategy], st.SearchStrategy]) -> st.SearchStrategy:
    """One streamed choice of vLLM's shape for `api`, each field passed through `maybe`."""
    if api == "completions":
        return st.fixed_dictionaries({"text": maybe(texts)}, optional={
            "logprobs": maybe(st.fixed_dictionaries({"tokens": maybe(tokens)}))})
    entry = maybe(st.fixed_dictionaries({"token": maybe(texts)}))
    return st.fixed_dictionaries({"delta": maybe(st.fixed_dictionaries({"content": maybe(texts)}))},
                                 optional={"logprobs": maybe(st.fixed_dictionaries({"content": maybe(
                                     st.lists(entry, max_size=4))}))})


def events(api: str, wrong_choices: bool = True) -> st.SearchStrategy:
    """Events of vLLM's shape for `api`, any field of which may be of any other JSON type (the choices' fields
    only when `wrong_choices`: a wrong one is a malformed event, and the usage and metrics are then never read)."""
    maybe = _maybe if wrong_choices else (lambda value: value)
    return st.fixed_dictionaries({"choices": maybe(st.lists(maybe(choices(api, maybe)), max_size=3))}, optional={
        "usage": _maybe(st.fixed_dictionaries({}, optional={"completion_tokens": counts})),
        "metrics": _maybe(st.fixed_dictionaries({}, optional={"speculative_decoding": _maybe(st.fixed_dictionaries(
            {}, optional={"num_draft_tokens": counts, "num_accepted_draft_tokens": counts,
                          "draft_acceptance_rate": _maybe(st.floats())}))}))})


apis = st.sampled_from(["completions", "chat"])
lines = (events("completions").map(lambda e: "data: " + json.dumps(e))
         | events("chat").map(lambda e: "data: " + json.dumps(e)) | json_values.map(lambda v: "data: " + json.dumps(v))
         | st.just("data: [DONE]") | st.text(max_size=30) | st.text(max_size=20).map(lambda t: "data: " + t))


def _read(api: str, feed: list[str], max_tokens: int | None) -> Stream:
    stream = Stream(api, clock=lambda: 1.0, max_tokens=max_tokens)  # type: ignore[arg-type]
    try:
        for line in feed:
            if stream.feed(line):
                break
        stream.finish()
    except Fault as fault:
        assert fault.kind and len(fault.detail) <= 200
    return stream


def _check(stream: Stream, max_tokens: int | None) -> None:
    assert all(type(n) is int and n >= 1 for n in stream.chunk_tokens)
    assert len(stream.chunk_s) == len(stream.chunk_tokens) and len(stream.token_digests) == sum(stream.chunk_tokens)
    if max_tokens is not None:
        assert sum(stream.chunk_tokens) <= max_tokens
    fields = stream.record_fields(k=2)
    assert type(fields["output_tokens"]) is int and fields["output_tokens"] >= 0
    if max_tokens is not None:
        assert fields["output_tokens"] <= max_tokens  # usage beyond max_tokens is never believed
    if fields["acceptance"] is not None:
        assert 0.0 <= fields["acceptance"] <= 1.0
    if fields["spec"] is not None and max_tokens is not None:
        assert fields["spec"]["num_accepted_draft_tokens"] <= max_tokens
    assert len(fields["anomalies"]) <= 8
    RequestRecord(index=0, prompt_id="p", temperature=0.0, scheduled_s=0.0, sent_s=0.0, end_s=1.0, **fields)


@FAST
@given(api=apis, feed=st.lists(lines, max_size=6),
       max_tokens=st.none() | st.integers(1, 16))
def test_any_lines_raise_only_faults(api, feed, max_tokens):
    _check(_read(api, feed, max_tokens), max_tokens)


@FAST
@given(api_feed=st.tuples(apis, st.booleans()).flatmap(
    lambda a: st.tuples(st.just(a[0]), st.lists(events(*a), max_size=6))), max_tokens=st.none() | st.integers(1, 16))
def test_events_of_the_real_shape_with_wrong_types_raise_only_faults(api_feed, max_tokens):
    api, feed = api_feed
    _check(_read(api, ["data: " + json.dumps(e) for e in feed] + ["data: [DONE]"], max_tokens), max_tokens)


@FAST
@given(error=json_values)
def test_an_error_of_any_type_is_a_stream_error_or_nothing(error):
    stream = Stream("completions", clock=lambda: 0.0)
    try:
        stream.feed("data: " + json.dumps({"error": error}))
    except Fault as fault:
        assert fault.kind == "stream_error" and error
    else:
        assert not error


def test_a_lone_surrogate_token_is_counted_not_an_encode_error():
    for api, choice in (("completions", {"text": "\ud800", "logprobs": {"tokens": ["\ud800"]}}),
                        ("chat", {"delta": {"content": "\ud800"}, "logprobs": {"content": [{"token": "\udfff"}]}})):
        stream = Stream(api, clock=lambda: 0.0)  # type: ignore[arg-type]
        stream.feed("data: " + json.dumps({"choices": [choice]}))
        assert stream.chunk_tokens == [1] and len(stream.token_digests) == 1


def test_deeply_nested_json_is_a_fault_not_a_recursion_error():
    stream = Stream("completions", clock=lambda: 0.0)
    try:
        stream.feed("data: " + "[" * 100_000)
    except Fault as fault:
        assert fault.kind == "malformed_sse"


@FAST
@given(counted=st.integers(0, 64), estimated=st.booleans(), usage=st.none() | st.integers(-10, 10**6),
       max_tokens=st.none() | st.integers(1, 64))
def test_reconciled_tokens_never_exceed_what_can_be_true(counted, estimated, usage, max_tokens):
    tokens, source, disagreement = reconcile_tokens(counted, estimated, usage, max_tokens)
    assert tokens >= counted >= 0
    if source == "usage":
        assert usage == tokens and (max_tokens is None or tokens <= max_tokens) and disagreement is None
    else:
        assert tokens == counted
    if not estimated:
        assert source == "logprobs" and (disagreement is None) == (usage in (None, counted))


@FAST
@given(pieces=st.lists(st.binary(max_size=40) | st.sampled_from([b"\r", b"\n", b"\r\n", b"ab\r", b"\nab"]),
                      max_size=8), limit=st.integers(1, 64))
def test_line_splitter_keeps_memory_bounded_and_loses_nothing(pieces, limit):
    splitter = LineSplitter(limit)
    out: list[str] = []
    try:
        for piece in pieces:
            out += splitter.feed(piece)
        out.append(splitter.rest())
    except Fault as fault:
        assert fault.kind == "line_too_long"
        assert all(len(line.encode(errors="replace")) <= 4 * limit for line in out)
        return
    assert out == re.split(r"\r\n|\r|\n", b"".join(pieces).decode(errors="replace"))


metric_lines = st.sampled_from([
    "vllm:spec_decode_num_drafts_total 5", "vllm:spec_decode_num_drafts_total NaN",
    "vllm:spec_decode_num_accepted_tokens_per_pos_total 3",
    'vllm:spec_decode_num_accepted_tokens_per_pos_total{position="x"} 3',
    'vllm:spec_decode_num_accepted_tokens_per_pos_total{position="²"} 3',
    'vllm:spec_decode_num_accepted_tokens_per_pos_total{position="1"} +Inf',
    "vllm:num_requests_running{a=\"b\"} garbage", "vllm:kv_cache_usage_perc 0.5", "garbage }{", "# TYPE x counter"])


@FAST
@given(text=st.text(max_size=200) | st.lists(metric_lines | st.tuples(st.sampled_from(WATCHED), texts).map("".join),
                                              max_size=8).map("\n".join))
def test_metrics_parsing_raises_nothing_and_keeps_finite_values(text):
    values = snapshot(text)
    assert all(math.isfinite(value) for value in values.values())
