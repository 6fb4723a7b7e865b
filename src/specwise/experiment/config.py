"""An experiment's configuration: the YAML file of `specwise run` — servers, workloads, loads,
repetitions, SLOs — validated into typed models; every mistake is one error naming the field."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from specwise.errors import SpecwiseError, check_url, read_text, validation_error
from specwise.urls import redact
from specwise.workload import MAX_CONCURRENCY, MAX_REQUESTS, MIN_RATE, Mix, load_dataset, parse_temperature_mix

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# An experiment runs servers × workloads × loads × repetitions cells, each a bench run: these bounds are far
# above any that ends in a day, and keep a pasted or generated file from stalling the parse (see MAX_FILE_BYTES).
MAX_SERVERS, MAX_WORKLOADS, MAX_LOADS, MAX_REPETITIONS = 32, 256, 64, 100
MAX_FILE_BYTES = 1 << 20
# libyaml's parser when PyYAML has it: the pure-Python one reads about 150 kB/s.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Strict(BaseModel):
    # NaN and infinity pass every `gt`/`le` bound they are compared with; a YAML `.inf` is never meant.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def checked_schedule(bands: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """A k-by-batch-size schedule as vLLM checks it, and one that drafts somewhere (all k = 0 is the baseline)."""
    from specwise.plan.command import check_schedule

    try:
        check_schedule(tuple(bands))
    except SpecwiseError as exc:
        raise ValueError(exc.problem + "; " + exc.fix) from None
    if not any(k for _lo, _hi, k in bands):
        raise ValueError("the schedule drafts at no batch size: that is the baseline")
    return bands


class Launch(Strict):
    """A server specwise starts: the embedded pair, or local model directories."""

    mode: Literal["baseline", "draft", "ngram"] = "baseline"
    k: int = Field(4, ge=1, le=16)
    k_schedule: list[tuple[int, int, int]] | None = Field(
        None, max_length=64, description="k by batch size, [[first, last, k], …] (vLLM's "
        "num_speculative_tokens_per_batch_size; `specwise tune` writes it): k is then the schedule's largest")
    model: str | None = Field(None, description="a local model directory (default: the embedded target)")
    draft: str | None = Field(None, description="a local draft directory (mode draft; default: the embedded draft)")
    dtype: str | None = None
    extra_args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _schedule_k(self) -> Launch:
        if self.k_schedule:
            self.k = max(k for _lo, _hi, k in checked_schedule(self.k_schedule))
        return self


class Server(Strict):
    name: str = Field(pattern=NAME, max_length=100)
    role: Literal["baseline", "candidate"] = "candidate"
    url: str | None = None
    launch: Launch | None = None
    model: str | None = None
    api_key_env: str | None = None
    api_key_file: Path | None = None
    k: int | None = Field(None, ge=1, le=64, description="speculative tokens per step, for per-chunk acceptance "
                          "estimates")
    max_num_seqs: int = Field(256, ge=1, le=MAX_CONCURRENCY, description="the server's --max-num-seqs (vLLM's GPU "
                              "default: 256)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_url(value)
            except SpecwiseError as exc:
                raise ValueError(exc.problem + "; " + exc.fix) from None
        return value

    @field_serializer("url")
    def _shown(self, url: str | None) -> str | None:
        """Whatever is dumped (experiment.json, reports) shows the URL redacted; requests read `url` itself."""
        return redact(url) if url else url

    @model_validator(mode="after")
    def _one_way(self) -> Server:
        if (self.url is None) == (self.launch is None):
            raise ValueError("give exactly one of url (a running server) or launch (specwise starts it)")
        return self

    @property
    def exact_by_design(self) -> bool:
        """False when the launch asks vLLM for a lossy acceptance scheme (typical acceptance)."""
        return not (self.launch and any("typical_acceptance" in arg for arg in self.launch.extra_args))

    @property
    def spec_k(self) -> int | None:
        if self.k:
            return self.k
        return self.launch.k if self.launch and self.launch.mode != "baseline" else None


class Workload(Strict):
    name: str = Field(pattern=NAME, max_length=100)
    dataset: str = "structured"
    temperatures: str = "0"
    control: str | None = Field(None, description="the workload that serves as this one's homogeneous control")
    production_temperatures: str | None = Field(None, description="the temperature mix production runs, when it "
                                                "differs from the tested one: untested temperatures are inconclusive")
    requests: int | None = Field(None, ge=5, le=MAX_REQUESTS, description="measured requests per cell for this "
                                 "workload (default: the experiment's): a mix is decided class by class, and each "
                                 "temperature class gets only its share of a cell")

    @field_validator("temperatures", "production_temperatures")
    @classmethod
    def _mix(cls, value: str | None) -> str | None:
        try:
            if value is not None:
                parse_temperature_mix(value)
        except SpecwiseError as exc:
            raise ValueError(exc.problem + "; " + exc.fix) from None
        return value

    @property
    def mix(self) -> Mix:
        return parse_temperature_mix(self.temperatures)

    @property
    def production_mix(self) -> Mix:
        return parse_temperature_mix(self.production_temperatures) if self.production_temperatures else ()


class Loads(Strict):
    concurrency: list[Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]] | None = Field(None, max_length=MAX_LOADS)
    rate: list[Annotated[float, Field(ge=MIN_RATE)]] | None = Field(None, max_length=MAX_LOADS,
                                                                   description="requests per second")

    @model_validator(mode="after")
    def _one_kind(self) -> Loads:
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("give exactly one of concurrency: [..] or rate: [..]")
        levels = self.levels
        if not levels or any(not v > 0 for v in levels):
            raise ValueError("load levels must be a non-empty list of numbers > 0")
        return self

    @property
    def unit(self) -> Literal["concurrency", "rate"]:
        return "concurrency" if self.concurrency is not None else "rate"

    @property
    def levels(self) -> list[float]:
        return sorted(float(v) for v in (self.concurrency if self.concurrency is not None else self.rate or []))


class Slo(Strict):
    p99_tpot_ms: float | None = Field(None, gt=0)
    p99_ttft_ms: float | None = Field(None, gt=0)
    p99_e2e_ms: float | None = Field(None, gt=0)

    def as_limits(self) -> dict[str, float]:
        """P99 limits by SLO name, as the verdict reads them: {"p99_tpot": ms, …}."""
        return {k.removesuffix("_ms"): v for k, v in self.model_dump().items() if v is not None}

    def bench_limits(self) -> dict[str, float]:
        """The same limits by latency, as a bench run's goodput reads them: {"tpot": ms, …}."""
        return {k.removeprefix("p99_"): v for k, v in self.as_limits().items()}


class Memory(Strict):
    """Device memory, for the memory rules on servers specwise does not launch (GB)."""

    device_gb: float = Field(gt=0)
    target_weights_gb: float = Field(ge=0)
    draft_weights_gb: float = Field(0.0, ge=0)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)


class Senders(Strict):
    """Who sends each cell's requests: this process, worker processes, or actors on a Ray cluster."""

    workers: int = Field(1, ge=1, le=256, description="1: this process; N: N worker processes (or Ray actors)")
    ray: str | None = Field(None, max_length=1000, description="a Ray cluster's address: send from its actors")


class Tune(Strict):
    """`specwise tune`: the k per batch-size band for one candidate, searched with few runs and proven by an A/B."""

    candidate: str | None = Field(None, description="the candidate server to tune (default: the only one)")
    workload: str | None = Field(None, description="the workload it is tuned on (default: the first)")
    ks: list[Annotated[int, Field(ge=1, le=16)]] = Field([1, 2, 3, 4, 5, 6], min_length=2, max_length=16)
    objective: Literal["tpot", "throughput", "goodput"] = "tpot"
    budget: float = Field(0.5, gt=0, le=1, description="the share of the full grid's runs the search may spend")
    urls: dict[str, str] = Field(default_factory=dict, description="servers specwise does not launch: one URL per "
                                 "k (\"3\": URL) and \"schedule\": the server started with the tuned schedule")
    schedule: list[tuple[int, int, int]] | None = Field(None, max_length=64, description="prove this schedule "
                                                        "([[first, last, k], …], e.g. a hand-made one) instead of "
                                                        "the one the search picks")
    verify: bool = Field(True, description="prove the schedule by an A/B against the baseline and the best static k")
    grid: bool = Field(False, description="also measure every (k, load) the search skipped, to check it")

    @field_validator("ks")
    @classmethod
    def _ks(cls, ks: list[int]) -> list[int]:
        if len(set(ks)) != len(ks):
            raise ValueError("k values must be unique")
        return sorted(ks)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, bands: list[tuple[int, int, int]] | None) -> list[tuple[int, int, int]] | None:
        return checked_schedule(bands) if bands is not None else None

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: dict[str, str]) -> dict[str, str]:
        for key, url in urls.items():
            if key != "schedule" and not key.isdigit():
                raise ValueError(f"urls key {key!r}: use a k (\"3\") or \"schedule\"")
            try:
                check_url(url)
            except SpecwiseError as exc:
                raise ValueError(f"urls[{key}]: {exc.problem}; {exc.fix}") from None
        return urls


class ExperimentConfig(Strict):
    name: str = Field("experiment", pattern=NAME, max_length=100)
    servers: list[Server] = Field(max_length=MAX_SERVERS)
    workloads: list[Workload] = Field(max_length=MAX_WORKLOADS)
    loads: Loads
    repetitions: int = Field(1, ge=1, le=MAX_REPETITIONS)
    requests: int = Field(32, ge=5, le=MAX_REQUESTS, description="measured requests per cell and repetition")
    warmup: int = Field(2, ge=0, le=MAX_REQUESTS)
    max_tokens: int = Field(64, ge=2, le=MAX_REQUESTS)
    api: Literal["completions", "chat"] = "completions"
    slo: Slo = Field(default_factory=Slo)
    primary_slo: Literal["tpot", "ttft", "e2e", "throughput"] = "tpot"
    monitoring: bool | None = Field(None, description="is acceptance monitored in production?")
    control: Literal["auto", "prescribe"] = Field("auto", description="auto: run the homogeneous control when "
                                                  "P50/P99 diverge on servers specwise launches")
    memory: Memory | None = None
    load_generator: Senders = Field(default_factory=Senders)
    tune: Tune | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        roles = [s.role for s in self.servers]
        if roles.count("baseline") != 1:
            raise ValueError("exactly one server must have role: baseline")
        if len(self.servers) < 2:
            raise ValueError("give a baseline and at least one candidate server")
        for what, names in (("server", [s.name for s in self.servers]), ("workload", [w.name for w in self.workloads])):
            dupes = {n for n, count in Counter(names).items() if count > 1}
            if dupes:
                raise ValueError(f"{what} names must be unique: {', '.join(sorted(dupes))}")
        if not self.workloads:
            raise ValueError("give at least one workload")
        names = {w.name for w in self.workloads}
        for w in self.workloads:
            if w.control is not None and w.control not in names:
                raise ValueError(f"workload {w.name}: control {w.control!r} is not a workload of this experiment")
        if self.tune is not None:
            self._check_tune(self.tune)
        return self

    def _check_tune(self, tune: Tune) -> None:
        cands = self.candidates
        if tune.candidate is None and len(cands) != 1:
            raise ValueError("tune.candidate: name the candidate server to tune (there are several)")
        if tune.candidate is not None and tune.candidate not in {s.name for s in cands}:
            raise ValueError(f"tune.candidate: {tune.candidate!r} is not a candidate server of this experiment")
        if tune.workload is not None and tune.workload not in {w.name for w in self.workloads}:
            raise ValueError(f"tune.workload: {tune.workload!r} is not a workload of this experiment")
        if self.loads.unit != "concurrency":
            raise ValueError("tune needs loads: concurrency: [..]: a schedule is by batch size, which a closed "
                             "loop of N requests holds near N")
        if tune.objective == "goodput" and not self.slo.as_limits():
            raise ValueError("tune.objective goodput needs an slo: section")
        cand = self.tune_candidate
        if cand.launch is None:
            missing = [str(k) for k in tune.ks if str(k) not in tune.urls]
            if missing:
                raise ValueError(f"tune.urls: give a URL for k = {', '.join(missing)} (servers specwise does not "
                                 "launch: one per k; `specwise tune --print-commands` prints their commands)")
        elif cand.launch.mode == "baseline":
            raise ValueError(f"tune.candidate: {cand.name} launches a baseline; tune a draft or ngram candidate")

    @property
    def tune_candidate(self) -> Server:
        name = self.tune.candidate if self.tune and self.tune.candidate else None
        return next(s for s in self.candidates if name is None or s.name == name)

    @property
    def tune_workload(self) -> Workload:
        name = self.tune.workload if self.tune and self.tune.workload else None
        return next(w for w in self.workloads if name is None or w.name == name)

    @property
    def baseline(self) -> Server:
        return next(s for s in self.servers if s.role == "baseline")

    @property
    def candidates(self) -> list[Server]:
        return [s for s in self.servers if s.role == "candidate"]

    def workload(self, name: str) -> Workload:
        return next(w for w in self.workloads if w.name == name)


def parse_config(text: str, source: str = "experiment file") -> ExperimentConfig:
    """YAML → config; any problem is one SpecwiseError naming the field."""
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506  (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecwiseError(source, f"is not valid YAML{where}", "fix the syntax") from None
    except ValueError as exc:  # a scalar YAML resolves but Python cannot build: 2024-02-30, a 5000-digit int
        raise SpecwiseError(source, f"holds a value that cannot be read ({str(exc)[:120]})", "fix it") from None
    except RecursionError:
        raise SpecwiseError(source, "is nested too deeply", "an experiment file is a few levels deep") from None
    if not isinstance(data, dict):
        raise SpecwiseError(source, "must be a YAML mapping", "see `specwise run --help` for an example")
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, "experiment", "fix it in " + source) from None
    for i, w in enumerate(config.workloads):
        try:
            load_dataset(w.dataset)
        except SpecwiseError as exc:
            raise SpecwiseError(f"workloads[{i}].dataset", exc.problem, exc.fix) from None
    return config


def quick_tune_config() -> ExperimentConfig:
    """`specwise tune --quick`: the embedded pair's draft model, k 1–6, at concurrency 1, 4 and 16 on the
    structured T=0 workload, proven with two repetitions."""
    return ExperimentConfig.model_validate({
        "name": "tune-quick",
        "servers": [{"name": "baseline", "role": "baseline", "launch": {"mode": "baseline"}},
                    {"name": "draft", "launch": {"mode": "draft", "k": 6}}],
        "workloads": [{"name": "structured-t0", "dataset": "structured", "temperatures": "0"}],
        "loads": {"concurrency": [1, 4, 16]},
        "requests": 32, "warmup": 2, "max_tokens": 48, "repetitions": 2,
        "tune": {"ks": [1, 2, 3, 4, 5, 6]},
    })


def load_config(path: Path) -> ExperimentConfig:
    text = read_text(path, "FILE", "give an experiment YAML file (see `specwise run --help`)", limit=MAX_FILE_BYTES)
    return parse_config(text, str(path))


def quick_config() -> ExperimentConfig:
    """`specwise run --quick` and `specwise demo`: the embedded pair — baseline, draft model and n-gram — on a
    homogeneous T=0 structured workload and a mixed-temperature (0 / 0.5 / 1.0) one, at two loads."""
    return ExperimentConfig.model_validate({
        "name": "quick",
        "servers": [{"name": "baseline", "role": "baseline", "launch": {"mode": "baseline"}},
                    {"name": "draft", "launch": {"mode": "draft", "k": 4}},
                    {"name": "ngram", "launch": {"mode": "ngram", "k": 4}}],
        "workloads": [{"name": "structured-t0", "dataset": "structured", "temperatures": "0"},
                      # 9 requests per temperature class and repetition: with 16 a class got 5 or 6, and whether
                      # its interval cleared the floor flipped the verdict from one run to the next.
                      {"name": "mixed", "dataset": "mixed", "temperatures": "0:1,0.5:1,1.0:1", "requests": 27}],
        "loads": {"concurrency": [1, 8]},
        "requests": 16, "warmup": 2, "max_tokens": 48, "repetitions": 2,
        "slo": {"p99_tpot_ms": 200},
    })
