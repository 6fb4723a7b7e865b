"""What is sent: prompt datasets, the temperature mix and the request schedule; and what production sends:
request logs read into a traffic profile and a replayable workload (pure). The log reader, the profile and
the replay load on first use (PEP 562), so that a command that only plans does not load numpy or pydantic."""

from specwise._lazy import lazy_door
from specwise.workload.datasets import MIXED, PROMPT_SETS, Prompt, load_dataset, load_prompt_set
from specwise.workload.mix import Mix, is_homogeneous, median_temperature, parse_temperature_mix, spread
from specwise.workload.schedule import (
                                       BURSTINESS,
                                       MAX_CONCURRENCY,
                                       MAX_REQUESTS,
                                       MIN_RATE,
                                       LoadShape,
                                       Planned,
                                       Share,
                                       arrival_offsets,
                                       request_plan,
)

__all__ = ["BURSTINESS", "MAX_CONCURRENCY", "MAX_REQUESTS", "MIN_RATE", "MIXED", "PROMPT_SETS", "BadLine",
           "LoadShape", "Mix", "Observed", "Planned", "Profiler", "Prompt", "Share", "TrafficProfile", "WorkloadFile",
           "arrival_offsets", "build_workload", "detect_format", "is_homogeneous", "load_dataset", "load_prompt_set",
           "load_workload", "median_temperature", "parse_temperature_mix", "read_log", "request_plan", "spread",
           "write_workload"]

__getattr__ = lazy_door(__name__, {
    "BadLine": ".logs", "Observed": ".logs", "detect_format": ".logs", "read_log": ".logs",
    "Profiler": ".traffic", "TrafficProfile": ".traffic",
    "WorkloadFile": ".replay", "build_workload": ".replay", "load_workload": ".replay", "write_workload": ".replay"})
