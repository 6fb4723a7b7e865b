"""`specwise analyze` on logs of growing size: time, throughput and peak memory, side by side in one run.

Writes gateway-style JSONL logs (an OpenAI chat request, its response with usage, a send time and timings,
about 1.3 kB a line: code, chat and summarization traffic at three temperatures) of each size asked for
(default 100 MB and 1 GB), runs `specwise analyze --json --emit-workload` on each in a fresh process, and
prints a table: lines, seconds, MB/s, the child's peak RSS, and the ratio of the largest log's RSS to the
smallest's — about 1 when memory is bounded (the one part that grows is 8 bytes of send time per request).

    python bench/analyze_scale.py [--sizes-mb 100 1000] [--dir /tmp/specwise-analyze-scale] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from traffic_logs import KINDS

MIX = (("code", 0.2), ("chat", 1.0), ("summarization", 0.0))


def write(path: Path, size_mb: int, seed: int = 0) -> int:
    """A log of about `size_mb` MB; returns its line count. Lines are drawn from a pool of 2000 distinct
    requests (with fresh send times): writing 1 GB of freshly generated text would take longer than reading it."""
    rng = random.Random(seed)
    pool = []
    for i in range(2000):
        kind, temperature = MIX[i % 3]
        prompt, output = KINDS[kind](rng)
        pool.append(json.dumps({"request": {"model": "m", "temperature": temperature, "max_tokens": 512,
                                            "messages": [{"role": "system", "content": "You are a helpful "
                                                          "assistant. " * 8},
                                                         {"role": "user", "content": prompt}]},
                                "response": {"choices": [{"message": {"role": "assistant", "content": output}}],
                                             "usage": {"prompt_tokens": len(prompt) // 4 + 40,
                                                       "completion_tokens": rng.randint(16, 400)}}})[:-1])
    target, lines, t = size_mb * 1_000_000, 0, 1_760_000_000.0
    with path.open("w") as f:
        written = 0
        while written < target:
            t += rng.expovariate(20.0)
            line = f'{pool[lines % len(pool)]}, "timestamp": {t:.3f}, "ttft_ms": {rng.uniform(20, 300):.1f}, ' \
                   f'"latency_ms": {rng.uniform(400, 9000):.1f}}}\n'
            f.write(line)
            written += len(line)
            lines += 1
    return lines


def measure(log: Path, out: Path) -> tuple[float, float, dict]:
    """Seconds and peak RSS (MB) of one `specwise analyze` in a child of its own."""
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:   # the child runs the CLI as a user would, and its rusage is its own
        with open(out / "analyze.json", "w") as stdout:
            os.dup2(stdout.fileno(), 1)
            os.execv(sys.executable, [sys.executable, "-m", "specwise", "analyze", str(log), "--json",
                                      "--emit-workload", str(out / "workload.json")])
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"specwise analyze failed on {log} (status {status})")
    return seconds, usage.ru_maxrss / 1024, json.loads((out / "analyze.json").read_text())["profile"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/specwise-analyze-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the logs (they are large)")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in sorted(args.sizes_mb):
        log = args.dir / f"log-{size}mb.jsonl"
        lines = write(log, size)
        seconds, rss, profile = measure(log, args.dir)
        assert profile["requests"] == lines and profile["bad_lines"] == 0, profile
        rows.append((size, log.stat().st_size / 1e6, lines, seconds, rss, profile))
        if not args.keep:
            log.unlink()
    print(f"{'log':>9} {'lines':>10} {'seconds':>8} {'MB/s':>6} {'peak RSS MB':>12}  temperature mix recovered")
    for size, mb, lines, seconds, rss, profile in rows:
        mix = ", ".join(f"{t:g}: {s:.1%}" for t, s in profile["temperature"]["mix"])
        print(f"{mb:>7.0f}MB {lines:>10} {seconds:>8.1f} {mb / seconds:>6.1f} {rss:>12.0f}  {mix}")
    if len(rows) > 1:
        print(f"peak RSS, {rows[-1][1]:.0f} MB log / {rows[0][1]:.0f} MB log: {rows[-1][4] / rows[0][4]:.2f}× "
              f"for {rows[-1][1] / rows[0][1]:.0f}× the data")
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
