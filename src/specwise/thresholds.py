"""Every number of SPEC §1's framework, once. The planner's checks, the verdict's rules and their
wording all read them from here.

Acceptance α = accepted / proposed draft tokens. The guide's thresholds assume a draft
costing about 1/9 of a target step.
"""

from __future__ import annotations

# §1.4 acceptance: below ACCEPT_OFF net negative; ACCEPT_OFF–ACCEPT_GAIN break-even (decide on P99
# under load); above ACCEPT_GAIN likely a real gain.
ACCEPT_OFF = 0.5
ACCEPT_GAIN = 0.65
# §1.6 the tail: a temperature bucket whose per-request P10 acceptance is below this is traffic hurt.
TAIL_P10 = 0.5
# §1.3/framework temperature: median ≤ TEMP_GOOD a good fit, > TEMP_OFF leave off; a mix whose
# temperatures span more than TEMP_SPREAD is not homogeneous.
TEMP_GOOD = 0.5
TEMP_OFF = 0.7
TEMP_SPREAD = 0.3
# §1.11 n-gram vs draft, as `specwise analyze` reads a log: n-gram lookup pays when outputs echo their
# prompts — a request whose output has at least NGRAM_OVERLAP of its 3-grams in the prompt is echo traffic
# (summaries and RAG answers sit at 0.5–0.9, chat and code at 0–0.2); traffic is "mostly structured" past
# STRUCTURED_SHARE; latency is TTFT-bound when the median request spends more than TTFT_BOUND_SHARE of its
# end-to-end time before the first token (speculation shortens only the time after it).
NGRAM_OVERLAP = 0.5
STRUCTURED_SHARE = 0.5
TTFT_BOUND_SHARE = 0.5
# §1.7 memory: the target alone over TARGET_SHARE of device memory leaves the draft no room; a draft
# over DRAFT_SHARE of usable memory costs too much KV cache.
TARGET_SHARE = 0.70
DRAFT_SHARE = 0.15
# What is left after weights below this share of total memory cannot hold a useful KV cache
# (§1.7's "≈4 GB left (unusable)" of 160 GB).
UNUSABLE_SHARE = 0.05
# §1.7 the squeeze: KV-cache usage at or above this is full.
KV_FULL = 0.9
# §1.5 homogeneity: a P99 speedup below this (5 % slower) is a P99 regression.
P99_WORSE = 0.95
# §1.8 quantization: an acceptance drop of more than this (5 points) after a change is the signal
# to step back.
ACCEPTANCE_DROP = 0.05
# §1.1 draft/target size: the sweet spot is a draft 8 to 12 times smaller; ≈1:5 predicts well but
# costs too much; ≈1:50 (8B→405B) and ≈1:70 (1B→70B) are too weak.
SWEET_SPOT = (8.0, 12.0)
TOO_COSTLY_BELOW = 6.0
TOO_WEAK_ABOVE = 25.0

# The measurement's own tolerances (not the guide's): what counts as a win, a regression, invalid data.
# A speedup whose confidence interval does not clear 1 + SPEEDUP_NOISE is not a win: inside the noise.
SPEEDUP_NOISE = 0.02
# Above a load where the candidate is proven faster, where to switch speculation off is an estimate of the
# crossover: a higher load stays on while its speedup estimate clears the noise floor and its interval rules
# out being more than (1 − NON_INFERIORITY) slower. Proof is asked of "speculation helps here at all", not of
# every load above it, where borderline intervals would flip the limit from one run to the next.
NON_INFERIORITY = 0.90
# The arms are not comparable when the candidate's error rate (or share of short outputs) exceeds the
# baseline's by more than this.
ERROR_TOLERANCE = 0.02
# With TTFT the primary SLO, a P50 TTFT more than this much slower than the baseline's is a loss.
TTFT_WORSE = 1.05
# Outputs at T = 0: a candidate whose share of outputs identical to the baseline's falls more than this
# below the baseline's own repeatability (plus sampling error) changed the outputs.
EQUIVALENCE_TOLERANCE = 0.10
# A production temperature within this of a tested one counts as tested.
COVERAGE_TOLERANCE = 0.05

# The load generator's own limits: when it is the bottleneck, what it measured is its own, not the server's.
# A request sent more than this after its scheduled time was not sent at the load asked for.
SEND_LAG_BOUND_S = 0.005
# A sender whose event loop was busy (running, or runnable and waiting for a core) more than this share of a
# window (CLIENT_BUSY_WINDOW_S), or of a stall at least that long, is saturated: the chunks it read then were
# timed late.
CLIENT_BUSY_SATURATED = 0.95
CLIENT_BUSY_WINDOW_S = 0.5
# A run with more than this share of its measured requests marked client-bound, and at least GENERATOR_BOUND_MIN
# of them, is generator-bound: its latencies and throughput are the client's limit and are not reported as the
# server's. (A hiccup or two is left out of the latencies, not taken for a limit.)
GENERATOR_BOUND_SHARE = 0.01
GENERATOR_BOUND_MIN = 3

# `specwise tune`: a predicted speedup is trusted to no better than ± this share, however tight its bootstrap
# interval: the step-cost model is linear in k and batch, and a CPU or GPU step is not quite.
PREDICTION_FLOOR = 0.04
