#!/usr/bin/env python3
"""The capacity model of docs/capacity.md, computed from docs/BENCHMARKS.md.

Reads the measured inputs out of docs/BENCHMARKS.md (each one by the line
that holds it, so a rerun of a benchmark moves the model with it), applies
the model described in docs/capacity.md, and rewrites the generated part of
docs/capacity.md (between its `capacity:model` markers). Node shape,
replication and partition size are parameters, not measurements; change
them on the command line.

Usage: python3 crates/rulake-bench/py/capacity.py [--cores 16] [--cache-gb 96]
       [--disk-tb 3.8] [--nic-gbit 10] [--replicas 2] [--partition 10000000]
"""
import argparse
import math
import os
import re
import sys

SIZES = [100_000_000, 1_000_000_000, 10_000_000_000]
DIMS = [384, 768]


def section(text, name):
    m = re.search(rf"<!-- section:{name} begin -->(.*?)<!-- section:{name} end -->", text, re.S)
    if not m:
        sys.exit(f"docs/BENCHMARKS.md has no `{name}` section: run its benchmark first")
    return m.group(1)


def find(text, pattern, what):
    m = re.search(pattern, text, re.S)
    if not m:
        sys.exit(f"cannot find {what} in docs/BENCHMARKS.md (pattern {pattern!r})")
    return m.groups()


def inputs(bench):
    """Every measured input, with where it came from."""
    core = section(bench, "core")
    small, large = core.split("### n = 1000000")
    per_vec, codes_and_raw = map(float, find(
        large, r"cache bytes per vector \| ([\d.]+) \(codes \+ original vectors: ([\d.]+)", "bytes per vector at 1M"))
    (q100k,) = find(small, r"RuLake defaults: queries/s, 1 thread \| (\d+)", "queries/s at 100k")
    (q1m,) = find(large, r"RuLake defaults: queries/s, 1 thread \| (\d+)", "queries/s at 1M")
    (build_s,) = find(large, r"Parquet lake → first answered query \| [\d.]+ s \(of which index build ([\d.]+) s\)",
                      "build time at 1M")
    emb = section(bench, "embeddings")
    (real_qps,) = find(emb, r"\| 0\.95 \| \d+ of \d+ \| [\d.]+ \| [\d.]+ \| yes \| (\d+) \|", "real-embedding queries/s at 0.95")
    fmt = section(bench, "formats")
    read = [float(x) for x in re.findall(r"\| (?:parquet|delta|iceberg) \|[^\n]*?\| ≤ 20 s \| \d+ \| (\d+) \|", fmt)]
    if not read:
        sys.exit("the formats section has no lake read figures: rerun `rulake-bench formats`")
    return {
        "bytes_per_vector_128": per_vec,
        "codes_and_raw_128": codes_and_raw,
        "s_per_query_100k": 1 / float(q100k),
        "s_per_query_1m": 1 / float(q1m),
        "build_core_s_per_vector_1m": float(build_s) * 2 / 1_000_000,
        "real_s_per_query_60k_384": 1 / float(real_qps),
        "lake_read_mb_s_2_cores": max(read),
    }


def model(i, a):
    raw_128 = 4 * 128
    codes_per_dim = (i["codes_and_raw_128"] - raw_128) / 128  # bytes of codes per dimension
    overhead = i["bytes_per_vector_128"] / i["codes_and_raw_128"]
    # Search cost per partition: a + b·sqrt(n) at D = 128 (IVF lists grow as
    # sqrt(n), nprobe stays), fitted on the two measured sizes; the b term
    # (distance work) scales with D.
    b = (i["s_per_query_1m"] - i["s_per_query_100k"]) / (math.sqrt(1e6) - math.sqrt(1e5))
    base = i["s_per_query_100k"] - b * math.sqrt(1e5)
    rows = []
    for d in DIMS:
        ram_all = overhead * (4 * d + codes_per_dim * d)
        ram_codes = overhead * codes_per_dim * d
        disk_raw = 4 * d
        for n in SIZES:
            p = max(1, math.ceil(n / a.partition))
            n_p = n / p
            for tier, ram_b, disk_b in (("all in RAM (today)", ram_all, 0.0),
                                        ("codes in RAM, vectors on disk (issue 27 item 4)", ram_codes, disk_raw)):
                ram = n * ram_b * a.replicas
                disk = n * disk_b * a.replicas
                nodes = max(math.ceil(ram / (a.cache_gb * 1e9)),
                            math.ceil(disk / (a.disk_tb * 1e12)) if disk else 0,
                            a.replicas)
                per_query = p * (base + b * math.sqrt(n_p) * d / 128)
                qps = nodes * a.cores / per_query
                lake_bytes = n * (4 * d + 8)
                read_s = lake_bytes / (nodes * a.nic_gbit / 8 * 1e9)
                build_core_s = n * i["build_core_s_per_vector_1m"] * math.sqrt(n_p / 1e6) * d / 128
                build_s = build_core_s / (nodes * a.cores)
                # A node loss: its partitions' second replicas keep serving;
                # the survivors rebuild the lost replicas from the lake.
                lost_bytes = lake_bytes * a.replicas / nodes
                lost_s = max(lost_bytes / ((nodes - 1) * a.nic_gbit / 8 * 1e9),
                             build_core_s * a.replicas / nodes / ((nodes - 1) * a.cores))
                rows.append((n, d, tier, ram_b, disk_b, nodes, ram, disk, p, p * a.replicas / nodes,
                             per_query, qps, lake_bytes, read_s, build_s, lost_bytes, lost_s))
    return rows, {"codes_per_dim": codes_per_dim, "overhead": overhead, "a": base, "b": b}


def human(x, unit):
    for f, s in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= f:
            return f"{x / f:.1f} {s}{unit}"
    return f"{x:.0f} {unit}"


def duration(s):
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def render(i, rows, fit, a):
    out = []
    w = out.append
    w("Generated by `python3 crates/rulake-bench/py/capacity.py"
      f" --cores {a.cores} --cache-gb {a.cache_gb:g} --disk-tb {a.disk_tb:g} --nic-gbit {a.nic_gbit:g}"
      f" --replicas {a.replicas} --partition {a.partition}` from docs/BENCHMARKS.md.\n")
    w("Inputs read from docs/BENCHMARKS.md:\n")
    w("| input | value | section |")
    w("|---|---:|---|")
    w(f"| cache bytes per vector, D = 128, n = 1M | {i['bytes_per_vector_128']:.1f} | core |")
    w(f"| of which codes + original vectors | {i['codes_and_raw_128']:.1f} | core |")
    w(f"| → codes per dimension (bytes) / bookkeeping ratio | {fit['codes_per_dim']:.3f} / {fit['overhead']:.3f} | derived |")
    w(f"| one query, one partition of 100k, 1 thread | {i['s_per_query_100k'] * 1e6:.0f} µs | core |")
    w(f"| one query, one partition of 1M, 1 thread | {i['s_per_query_1m'] * 1e6:.0f} µs | core |")
    w(f"| → fit a + b·√n at D = 128 | a = {fit['a'] * 1e6:.1f} µs, b = {fit['b'] * 1e6:.4f} µs | derived |")
    w(f"| one query on real 384-d embeddings (60k, recall 0.95) | {i['real_s_per_query_60k_384'] * 1e6:.0f} µs | embeddings |")
    w(f"| index build, n = 1M, D = 128 (core-seconds per vector) | {i['build_core_s_per_vector_1m'] * 1e6:.1f} µs | core |")
    w(f"| lake bytes ÷ time to first answer, 2 cores, local disk (best format; build-bound, not a read limit) | {i['lake_read_mb_s_2_cores']:.0f} MB/s | formats |")
    w("")
    w(f"Parameters (not measured): {a.cores} cores and {a.cache_gb:g} GB of cache per node, {a.disk_tb:g} TB of local "
      f"disk, {a.nic_gbit:g} Gbit/s from the lake per node, replication {a.replicas}, partitions of at most "
      f"{a.partition:,} vectors.\n")
    w("| vectors | D | tier | RAM / vector | disk / vector | nodes | RAM total | disk total | partitions | per node | "
      "CPU per query | cluster q/s | lake bytes | read at NIC speed | build | node loss: re-read, rebuild |")
    w("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (n, d, tier, ram_b, disk_b, nodes, ram, disk, p, per_node, per_query, qps, lake_bytes, read_s, build_s,
         lost_bytes, lost_s) in rows:
        w(f"| {n:,} | {d} | {tier} | {ram_b:.0f} B | {disk_b:.0f} B | {nodes} | {human(ram, 'B')} | "
          f"{human(disk, 'B') if disk else '–'} | {p} | {per_node:.1f} | {per_query * 1e3:.1f} ms | {qps:,.0f} | "
          f"{human(lake_bytes, 'B')} | {duration(read_s)} | {duration(build_s)} | {human(lost_bytes, 'B')}, {duration(lost_s)} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--cache-gb", type=float, default=96)
    ap.add_argument("--disk-tb", type=float, default=3.8)
    ap.add_argument("--nic-gbit", type=float, default=10)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--partition", type=int, default=10_000_000)
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    bench = open(os.path.join(root, "docs", "BENCHMARKS.md"), encoding="utf-8").read()
    i = inputs(bench)
    rows, fit = model(i, a)
    md = render(i, rows, fit, a)
    path = os.path.join(root, "docs", "capacity.md")
    doc = open(path, encoding="utf-8").read()
    begin, end = "<!-- capacity:model begin -->", "<!-- capacity:model end -->"
    if begin not in doc or end not in doc:
        sys.exit(f"{path} has no {begin} … {end} block")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    open(path, "w", encoding="utf-8").write(f"{head}{begin}\n{md}{end}{tail}")
    print(md)


if __name__ == "__main__":
    main()
