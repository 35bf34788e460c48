#!/usr/bin/env python3
"""Per-kernel GPU time of a program from Nsight Compute's raw CSV.

  ncu --clock-control none --metrics gpu__time_duration.sum --csv PROGRAM > ncu.csv
  python3 bench/executor/kernel_times.py ncu.csv [--top 30]

Groups launches by kernel name (template arguments dropped) and prints, per
group, launches, total and mean duration and share of the total, largest first.
ncu serialises launches, so the total is kernel time, not the step's wall time.
"""
import argparse
import collections
import csv
import re
import sys


def short(name):
    name = re.sub(r"<.*>", "<>", name)  # template arguments
    name = re.sub(r"\(.*\)$", "", name)  # parameter list
    return name[:90]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    lines = open(a.csv, errors="replace").read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit(f"{a.csv}: no ncu CSV header (\"ID\", ...) found")
    total = collections.Counter()
    count = collections.Counter()
    for row in csv.DictReader(lines[start:]):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        unit = row.get("Metric Unit", "ns")
        scale = {"ns": 1e-9, "nsecond": 1e-9, "us": 1e-6, "usecond": 1e-6, "ms": 1e-3, "msecond": 1e-3}.get(unit)
        if scale is None:
            sys.exit(f"{a.csv}: unknown time unit {unit!r}")
        k = short(row["Kernel Name"])
        total[k] += value * scale
        count[k] += 1
    grand = sum(total.values())
    if not grand:
        sys.exit(f"{a.csv}: no gpu__time_duration rows")
    print(f"{sum(count.values())} launches, {grand*1e3:.1f} ms of kernel time (ncu, launches serialised)")
    print(f"{'ms':>9} {'share':>6} {'launches':>8} {'mean us':>9}  kernel")
    for k, t in total.most_common(a.top):
        print(f"{t*1e3:9.2f} {t/grand*100:5.1f}% {count[k]:8d} {t/count[k]*1e6:9.1f}  {k}")


if __name__ == "__main__":
    main()
