"""Time the demo-fleet generator at benchmark size: seconds, rows/s and peak RSS.

Usage: python benchmarks/bench_fleet.py [n_rows] [out_dir]
Generates the fleet in memory (generate_fleet), then writes every file of the dataset (generate_demo) into a
temporary folder (or out_dir), and prints a Markdown table. Timings never gate tests.
"""
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seatrial.fleet import generate_demo, generate_fleet, size_fleet


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(n_rows: int = 5_000_000, out_dir: str | None = None) -> None:
    n_vessels, days = size_fleet(n_rows)
    t = time.perf_counter()
    fleet = generate_fleet(n_rows, seed=0)
    gen_s = time.perf_counter() - t
    gen_rss = peak_rss_mb()
    del fleet
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(out_dir or tmp)
        t = time.perf_counter()
        paths = generate_demo(out, n_rows=n_rows, seed=0)
        demo_s = time.perf_counter() - t
        sizes = {k: subprocess.run(["du", "-sh", str(p)], capture_output=True, text=True).stdout.split()[0]
                 for k, p in paths.items()}
    print("| n_rows | vessels | days | generate_fleet s | rows/s | peak RSS MB | generate_demo (with writes) s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {n_rows:,} | {n_vessels} | {days:.0f} | {gen_s:.1f} | {n_rows / gen_s:,.0f} | {gen_rss:,.0f} | {demo_s:.1f} |")
    print("\nfile sizes: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000_000, sys.argv[2] if len(sys.argv) > 2 else None)
