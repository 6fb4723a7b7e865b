"""Run one experiment twice and set the deciding figures side by side: are the verdicts the same, and does
each run's interval for a deciding speedup contain the other run's estimate?

    .venv/bin/python bench/reproducibility.py                 # the demo's experiment (`specwise run --quick`)
    .venv/bin/python bench/reproducibility.py exp.yaml --out runs/repro

Each run is a full `specwise run` (servers launched anew), so the comparison includes everything that
changes between two runs on one machine: server starts, warm caches, the machine's other load.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from specwise.experiment import findings_from_disk


def run_once(experiment: str | None, out: Path) -> float:
    args = ["run", experiment] if experiment else ["run", "--quick"]
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "specwise", *args, "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", help="experiment YAML (default: the quick experiment)")
    parser.add_argument("--out", type=Path, default=Path("specwise-runs") / f"repro-{time.strftime('%Y%m%d-%H%M%S')}")
    ns = parser.parse_args()
    roots = [ns.out / "first", ns.out / "second"]
    minutes = [run_once(ns.experiment, root) / 60 for root in roots]
    first, second = (findings_from_disk(root) for root in roots)
    print(f"runs took {minutes[0]:.1f} and {minutes[1]:.1f} min")
    print(f"{'candidate':10} {'workload':15} {'load':>5}  {'first run TPOT P50 speedup':28} "
          f"{'second run':28} each CI holds the other?")
    same = contained = total = 0
    for a, b in zip(first.findings, second.findings):
        same += a.verdict.decision is b.verdict.decision
        print(f"{a.candidate:10} {a.workload:15} verdicts: {a.verdict.decision.value} / {b.verdict.decision.value}")
        for ca, cb in zip(a.loads, b.loads):
            sa, sb = ca.tpot_p50_speedup, cb.tpot_p50_speedup
            if sa is None or sb is None or sa.low is None or sb.low is None:
                continue
            holds = sa.low <= sb.value <= sa.high and sb.low <= sa.value <= sb.high
            contained += holds
            total += 1
            print(f"{'':10} {'':15} {ca.load:5g}  {sa.value:5.2f}× [{sa.low:.2f}–{sa.high:.2f}]{'':11} "
                  f"{sb.value:5.2f}× [{sb.low:.2f}–{sb.high:.2f}]{'':11} {'yes' if holds else 'NO'}")
    print(f"same verdict: {same} of {len(first.findings)}; intervals holding each other's estimate: "
          f"{contained} of {total}")


if __name__ == "__main__":
    main()
