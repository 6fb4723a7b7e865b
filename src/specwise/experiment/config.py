"""An experiment's configuration: the YAML file of `specwise run` — servers, workloads, loads,
repetitions, SLOs — validated into typed models; every mistake is one error naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from specwise.errors import SpecwiseError
from specwise.urls import redact
from specwise.workload import Mix, load_dataset, parse_temperature_mix

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Launch(Strict):
    """A server specwise starts: the embedded pair, or local model directories."""

    mode: Literal["baseline", "draft", "ngram"] = "baseline"
    k: int = Field(4, ge=1, le=16)
    model: str | None = Field(None, description="a local model directory (default: the embedded target)")
    draft: str | None = Field(None, description="a local draft directory (mode draft; default: the embedded draft)")
    dtype: str | None = None
    extra_args: list[str] = Field(default_factory=list)


class Server(Strict):
    name: str = Field(pattern=NAME)
    role: Literal["baseline", "candidate"] = "candidate"
    url: str | None = None
    launch: Launch | None = None
    model: str | None = None
    api_key_env: str | None = None
    api_key_file: Path | None = None
    k: int | None = Field(None, ge=1, description="speculative tokens per step, for per-chunk acceptance estimates")
    max_num_seqs: int = Field(256, ge=1, description="the server's --max-num-seqs (vLLM's GPU default: 256)")

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
    name: str = Field(pattern=NAME)
    dataset: str = "structured"
    temperatures: str = "0"
    control: str | None = Field(None, description="the workload that serves as this one's homogeneous control")
    production_temperatures: str | None = Field(None, description="the temperature mix production runs, when it "
                                                "differs from the tested one: untested temperatures are inconclusive")

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
    concurrency: list[int] | None = None
    rate: list[float] | None = None

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


class ExperimentConfig(Strict):
    name: str = Field("experiment", pattern=NAME)
    servers: list[Server]
    workloads: list[Workload]
    loads: Loads
    repetitions: int = Field(1, ge=1)
    requests: int = Field(32, ge=5, description="measured requests per cell and repetition")
    warmup: int = Field(2, ge=0)
    max_tokens: int = Field(64, ge=2)
    api: Literal["completions", "chat"] = "completions"
    slo: Slo = Field(default_factory=Slo)
    primary_slo: Literal["tpot", "ttft", "e2e", "throughput"] = "tpot"
    monitoring: bool | None = Field(None, description="is acceptance monitored in production?")
    control: Literal["auto", "prescribe"] = Field("auto", description="auto: run the homogeneous control when "
                                                  "P50/P99 diverge on servers specwise launches")
    memory: Memory | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        roles = [s.role for s in self.servers]
        if roles.count("baseline") != 1:
            raise ValueError("exactly one server must have role: baseline")
        if len(self.servers) < 2:
            raise ValueError("give a baseline and at least one candidate server")
        for what, names in (("server", [s.name for s in self.servers]), ("workload", [w.name for w in self.workloads])):
            dupes = {n for n in names if names.count(n) > 1}
            if dupes:
                raise ValueError(f"{what} names must be unique: {', '.join(sorted(dupes))}")
        if not self.workloads:
            raise ValueError("give at least one workload")
        names = {w.name for w in self.workloads}
        for w in self.workloads:
            if w.control is not None and w.control not in names:
                raise ValueError(f"workload {w.name}: control {w.control!r} is not a workload of this experiment")
        return self

    @property
    def baseline(self) -> Server:
        return next(s for s in self.servers if s.role == "baseline")

    @property
    def candidates(self) -> list[Server]:
        return [s for s in self.servers if s.role == "candidate"]

    def workload(self, name: str) -> Workload:
        return next(w for w in self.workloads if w.name == name)


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "experiment"


def parse_config(text: str, source: str = "experiment file") -> ExperimentConfig:
    """YAML → config; any problem is one SpecwiseError naming the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecwiseError(source, f"is not valid YAML{where}", "fix the syntax") from None
    if not isinstance(data, dict):
        raise SpecwiseError(source, "must be a YAML mapping", "see `specwise run --help` for an example")
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        raise SpecwiseError(_field_path(loc), msg, "fix it in " + source) from None
    for w in config.workloads:
        try:
            load_dataset(w.dataset)
        except SpecwiseError as exc:
            raise SpecwiseError(f"workloads[{config.workloads.index(w)}].dataset", exc.problem, exc.fix) from None
    return config


def load_config(path: Path) -> ExperimentConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecwiseError("FILE", f"cannot read {path}: {exc.strerror}", "give an experiment YAML file") from None
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
                      {"name": "mixed", "dataset": "mixed", "temperatures": "0:1,0.5:1,1.0:1"}],
        "loads": {"concurrency": [1, 8]},
        "requests": 16, "warmup": 2, "max_tokens": 48, "repetitions": 2,
        "slo": {"p99_tpot_ms": 200},
    })
