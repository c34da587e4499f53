#!/usr/bin/env python3
"""Plot the recall/queries-per-second curves `rulake-bench embeddings` measured.

Input: the JSON the benchmark writes (`{"sets": [{"name", "title", "points":
[{"system", "setting", "recall", "qps"}]}]}`). Output: one PNG with a panel
per data set, queries/s (one thread, one query at a time, log scale)
against recall@10, each system's Pareto frontier as a line and every
measured point as a dot.
"""

import argparse
import json
import textwrap
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def frontier(points):
    """Points no other point beats on both recall and queries/s."""
    best, out = -1.0, []
    for p in sorted(points, key=lambda p: (-p["qps"], -p["recall"])):
        if p["recall"] > best:
            out.append(p)
            best = p["recall"]
    return sorted(out, key=lambda p: p["recall"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    with open(args.input) as f:
        data = json.load(f)
    sets = data["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 5.0), squeeze=False)
    for ax, s in zip(axes[0], sets):
        by_system = defaultdict(list)
        for p in s["points"]:
            by_system[p["system"]].append(p)
        for system, pts in sorted(by_system.items()):
            front = frontier(pts)
            line = ax.plot(
                [p["recall"] for p in front],
                [p["qps"] for p in front],
                marker="o",
                markersize=3,
                linewidth=2 if system.startswith("RuLake") else 1.2,
                label=system,
            )[0]
            ax.scatter(
                [p["recall"] for p in pts],
                [p["qps"] for p in pts],
                s=6,
                alpha=0.35,
                color=line.get_color(),
            )
        for r in (0.90, 0.95, 0.98):
            ax.axvline(r, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xlim(0.8, 1.0)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries/s (1 thread, one at a time)")
        ax.set_title(textwrap.fill(s["title"], 60), fontsize=9)
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)


if __name__ == "__main__":
    main()
