"""What is sent: prompt datasets, the temperature mix and the request schedule (pure)."""

from specwise.workload.datasets import MIXED, PROMPT_SETS, Prompt, load_dataset, load_prompt_set
from specwise.workload.mix import Mix, is_homogeneous, median_temperature, parse_temperature_mix, spread
from specwise.workload.schedule import (MAX_CONCURRENCY, MAX_REQUESTS, MIN_RATE, LoadShape, Planned, Share,
                                       arrival_offsets, request_plan)

__all__ = ["MAX_CONCURRENCY", "MAX_REQUESTS", "MIN_RATE", "MIXED", "PROMPT_SETS", "LoadShape", "Mix", "Planned",
           "Prompt", "Share", "arrival_offsets", "is_homogeneous", "load_dataset", "load_prompt_set", "median_temperature",
           "parse_temperature_mix", "request_plan", "spread"]
