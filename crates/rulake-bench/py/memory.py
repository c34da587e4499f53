#!/usr/bin/env python3
"""Memory a `rulake serve` node really uses: accounted cache bytes against
resident and peak memory while it loads one Parquet collection.

Writes an n × dim Parquet file (pyarrow), starts `rulake serve` on it with
`--recall-sample 0`, creates one collection, samples the server's
/proc/<pid>/status every 50 ms while it loads (VmRSS, and VmHWM, which is
reset through clear_refs once the server is up so the peak is the load's),
then waits `--settle` seconds and reads again. Prints one Markdown table
row per run; with `--report` it rewrites the `memory` section of
docs/BENCHMARKS.md with the rows of this run.

The accounted figure is `rulake_cache_bytes` from /metrics; "resident" and
"peak" are VmRSS and VmHWM minus the server's VmRSS before the load (its
fixed base: runtime, catalog, gRPC), which is printed too.

Usage: python3 crates/rulake-bench/py/memory.py --binary target/release/rulake
          [--n 60000 --n 100000 ...] [--dim 384] [--label glibc] [--report]
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

MIB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid):
    """VmRSS and VmHWM of `pid`, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out["VmRSS"], out["VmHWM"]


def metric(port, name):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def write_lake(path, n, dim, rows_per_group, seed, page_index=True):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    chunk = 50_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        centers = rng.standard_normal((64, dim), dtype=np.float32)
        v = centers[rng.integers(0, 64, m)] + 0.3 * rng.standard_normal((m, dim), dtype=np.float32)
        vec = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1), pa.float32()), dim)
        t = pa.table({"id": pa.array(np.arange(start, start + m, dtype=np.int64)), "vector": vec})
        if writer is None:
            writer = pq.ParquetWriter(path, t.schema, compression="snappy", write_page_index=page_index)
        writer.write_table(t, row_group_size=rows_per_group)
        print(f"  wrote {start + m}/{n} rows", file=sys.stderr, flush=True)
    writer.close()


class Sampler(threading.Thread):
    """Samples VmRSS every 50 ms; prints progress once a second."""

    def __init__(self, pid, base, port):
        super().__init__(daemon=True)
        self.pid, self.base, self.port = pid, base, port
        self.stop = threading.Event()
        self.max_rss = 0

    def run(self):
        last = 0.0
        while not self.stop.is_set():
            try:
                rss, hwm = status(self.pid)
            except OSError:
                return
            self.max_rss = max(self.max_rss, rss)
            if time.time() - last >= 1.0:
                last = time.time()
                acc = metric(self.port, "rulake_cache_bytes") or 0
                print(
                    f"  loading: resident {(rss - self.base) / MIB:8.1f} MiB  peak {(hwm - self.base) / MIB:8.1f} MiB"
                    f"  accounted {acc / MIB:8.1f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(0.05)


def run_one(binary, n, dim, args, work, extra_env):
    lake = os.path.join(work, f"lake-{n}x{dim}" + ("" if args.page_index else "-no-page-index"))
    os.makedirs(lake, exist_ok=True)
    path = os.path.join(lake, "part-0000.parquet")
    if not os.path.exists(path):
        print(f"writing {n} x {dim} vectors to {path} ...", file=sys.stderr, flush=True)
        write_lake(path, n, dim, args.rows_per_group, seed=n, page_index=args.page_index)
    data = os.path.join(work, f"data-{n}")
    shutil.rmtree(data, ignore_errors=True)
    api, mport = free_port(), free_port()
    env = dict(os.environ, RULAKE_SOURCE_ALLOW="file:///", RULAKE_LOG=os.environ.get("RULAKE_LOG", "warn"))
    client_env = dict(env)
    env.update(extra_env)
    cmd = [
        binary, "serve", "--listen", f"127.0.0.1:{api}", "--metrics-listen", f"127.0.0.1:{mport}",
        "--data-dir", data, "--recall-sample", "0",
    ] + (["--cache-bytes", str(args.cache_bytes)] if args.cache_bytes else [])
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while metric(mport, "rulake_cache_bytes") is None:
            if server.poll() is not None or time.time() > deadline:
                raise SystemExit(f"rulake serve did not come up (exit {server.poll()})")
            time.sleep(0.2)
        time.sleep(1.0)
        base, _ = status(server.pid)
        # Reset VmHWM to the current RSS, so the peak read later is the load's.
        with open(f"/proc/{server.pid}/clear_refs", "w") as f:
            f.write("5")
        sampler = Sampler(server.pid, base, mport)
        sampler.start()
        started = time.time()
        subprocess.run(
            [binary, "collections", "create", "mem", "--dim", str(dim), "--source", "parquet",
             "--url", f"file://{lake}", "--partitions", str(args.partitions), "--addr", f"http://127.0.0.1:{api}"],
            env=client_env, check=True, stdout=subprocess.DEVNULL,
        )
        expected = n  # wait until the collection is loaded and accounted
        while True:
            acc = metric(mport, "rulake_cache_bytes") or 0
            ready = urllib.request.urlopen(f"http://127.0.0.1:{mport}/readyz", timeout=5).status == 200 if acc else False
            if acc > 0 and ready:
                break
            if time.time() - started > 3600:
                raise SystemExit("the load did not finish within an hour")
            time.sleep(0.2)
        load_s = time.time() - started
        rss, hwm = status(server.pid)
        sampler.stop.set()
        sampler.join()
        print(f"  loaded in {load_s:.1f} s; settling {args.settle} s ...", file=sys.stderr, flush=True)
        time.sleep(args.settle)
        rss_later, _ = status(server.pid)
        acc = metric(mport, "rulake_cache_bytes")
        return {
            "n": expected, "dim": dim, "base": base, "accounted": acc, "resident": rss - base,
            "peak": max(hwm, sampler.max_rss) - base, "later": rss_later - base, "load_s": load_s,
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def row(label, r):
    return (
        f"| {label} | {r['n']:,} × {r['dim']} | {r['base'] / MIB:.0f} | {r['accounted'] / MIB:.0f} "
        f"| {r['resident'] / MIB:.0f} ({r['resident'] / r['accounted']:.2f}×) "
        f"| {r['peak'] / MIB:.0f} ({r['peak'] / max(r['resident'], 1):.2f}× resident) "
        f"| {r['later'] / MIB:.0f} | {r['load_s']:.1f} |"
    )


HEAD = (
    "| allocator | vectors | base MiB | accounted MiB | resident after load MiB | peak during load MiB "
    "| resident 20 s later MiB | load s |\n|---|---|---:|---:|---:|---:|---:|---:|"
)


def splice(path, name, body):
    begin, end = f"<!-- section:{name} begin -->", f"<!-- section:{name} end -->"
    text = open(path).read()
    block = f"{begin}\n{body.rstrip()}\n{end}"
    b, e = text.find(begin), text.find(end)
    text = text[:b] + block + text[e + len(end):] if 0 <= b < e else text.rstrip() + "\n\n" + block + "\n"
    open(path, "w").write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", action="append", required=True,
                    help="a rulake binary, as LABEL=PATH or PATH; repeat to compare builds")
    ap.add_argument("--env", action="append", default=[],
                    help="LABEL:KEY=VALUE: environment of the server of that label (e.g. LD_PRELOAD of another allocator)")
    ap.add_argument("--n", type=int, action="append", help="vectors (repeatable; default 60000)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--rows-per-group", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--no-page-index", dest="page_index", action="store_false",
                    help="write the file without an offset index (pyarrow's default), so row groups are fetched whole")
    ap.add_argument("--cache-bytes", type=int, default=0)
    ap.add_argument("--settle", type=float, default=20.0)
    ap.add_argument("--work", default="rulake-demo-lake/memory")
    ap.add_argument("--report", action="store_true", help="rewrite the memory section of docs/BENCHMARKS.md")
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    rows = []
    for spec in args.binary:
        label, _, path = spec.rpartition("=")
        label = label or os.path.basename(path)
        extra = dict(e.split(":", 1)[1].split("=", 1) for e in args.env if e.split(":", 1)[0] == label)
        for n in args.n or [60_000]:
            print(f"== {label}: {n} x {args.dim}", file=sys.stderr, flush=True)
            r = run_one(os.path.abspath(path), n, args.dim, args, work, extra)
            rows.append(row(label, r))
            print(HEAD + "\n" + rows[-1], flush=True)
    table = HEAD + "\n" + "\n".join(rows)
    print("\n" + table)
    if args.report:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        body = (
            "## Memory: accounted cache bytes against resident and peak memory\n\n"
            "Produced by `python3 crates/rulake-bench/py/memory.py --binary glibc=target/release/rulake "
            f"--n {' --n '.join(str(n) for n in (args.n or [60_000]))} --report` (release builds; "
            "`--binary LABEL=PATH` once per build compared). One `rulake serve`, one collection over one "
            f"Parquet file (D = {args.dim}, {args.rows_per_group:,} rows a row group, {args.partitions} partition(s)), "
            "`--recall-sample 0`. Base is the server's VmRSS before the load; resident and peak are VmRSS and VmHWM "
            "minus that base (VmHWM reset through `clear_refs` once the server is up). Accounted is `rulake_cache_bytes`.\n\n"
            + table + "\n"
        )
        splice(os.path.join(root, "docs", "BENCHMARKS.md"), "memory", body)
        print("wrote the memory section of docs/BENCHMARKS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
