#!/usr/bin/env python3
"""FAISS's side of RuLake's benchmark.

`rulake-bench core` writes a lake (a directory of Parquet files with an `id`
column and a `fixed_size_list<float32>` `vector` column) and a query file,
measures RuLake on them, and runs this script on the very same files so that
both systems are compared on identical data. This script measures:

* `IndexFlatL2` (exact search): build time, queries/s;
* `IndexIVFFlat` (flat quantizer, `--nlist` lists): train + add time, then
  recall@k and queries/s for every `--nprobe`;
* the IVF index's serialized size per vector.

Every search measurement is repeated for each `--threads` value (set with
`faiss.omp_set_num_threads`). Queries/s are reported twice: `qps_batch`
searches all queries in one `index.search` call, and `qps_single` searches
them one at a time from a Python loop (at most the first 1000 queries), as
RuLake's side does. Recall@k is measured against the exact answer of
`IndexFlatL2` on the same data, comparing row indexes (row order is the
lake's files sorted by name, concatenated).

Install the dependencies with `pip install -r crates/rulake-bench/py/requirements.txt`.
Progress goes to stderr; the results are written as JSON to `--output`
(or stdout when it is not given).
"""

import argparse
import glob
import json
import os
import platform
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import faiss

SINGLE_QUERY_LIMIT = 1000
WARMUP_QUERIES = 8


def log(msg):
    print(f"faiss: {msg}", file=sys.stderr, flush=True)


def int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"need positive integers: {text!r}")
    return values


def vectors_of(column, path):
    """A (rows x D) float32 matrix from a fixed_size_list (or list) column."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.null_count:
        raise SystemExit(f"{path}: vector column has null rows")
    t = arr.type
    if pa.types.is_fixed_size_list(t):
        dim = t.list_size
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = np.asarray(arr.value_lengths())
        if len(lengths) and (lengths != lengths[0]).any():
            raise SystemExit(f"{path}: vectors of different lengths")
        dim = int(lengths[0]) if len(lengths) else 0
    else:
        raise SystemExit(f"{path}: vector column has type {t}, want a list of float32")
    values = arr.flatten()  # respects slicing, unlike .values
    if values.null_count:
        raise SystemExit(f"{path}: vector column has null elements")
    flat = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if dim == 0 or flat.size != len(arr) * dim:
        raise SystemExit(f"{path}: cannot read vectors of dimension {dim}")
    return flat.reshape(len(arr), dim)


def read_file(path):
    table = pq.read_table(path, columns=["id", "vector"])
    ids = table.column("id").to_numpy().astype(np.uint64, copy=False)
    return ids, vectors_of(table.column("vector"), path)


def read_lake(lake_dir):
    paths = sorted(glob.glob(os.path.join(lake_dir, "*.parquet")))
    if not paths:
        raise SystemExit(f"no *.parquet files in {lake_dir}")
    ids, vecs = [], []
    for p in paths:
        i, v = read_file(p)
        if vecs and v.shape[1] != vecs[0].shape[1]:
            raise SystemExit(f"{p}: dimension {v.shape[1]}, earlier files have {vecs[0].shape[1]}")
        ids.append(i)
        vecs.append(v)
    return (
        np.concatenate(ids),
        np.ascontiguousarray(np.concatenate(vecs), dtype=np.float32),
        len(paths),
    )


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def recall_at_k(found, truth, k):
    """Mean fraction of the true k nearest rows found (-1 never matches)."""
    hits = 0
    for f, t in zip(found, truth):
        hits += len(np.intersect1d(f[f >= 0], t, assume_unique=False))
    return hits / (len(truth) * k)


def measure(index, queries, k, truth):
    """Recall@k and queries/s (one batch call, then one query per call)."""
    index.search(queries[:WARMUP_QUERIES], k)  # start the OpenMP threads
    start = time.perf_counter()
    _, found = index.search(queries, k)
    batch_s = time.perf_counter() - start

    single = queries[:SINGLE_QUERY_LIMIT]
    start = time.perf_counter()
    for i in range(len(single)):
        index.search(single[i : i + 1], k)
    single_s = time.perf_counter() - start

    return {
        "recall": recall_at_k(found, truth, k),
        "qps_batch": len(queries) / batch_s if batch_s > 0 else None,
        "qps_single": len(single) / single_s if single_s > 0 else None,
    }


def serialized_bytes_per_vector(index, n):
    return len(faiss.serialize_index(index)) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", required=True, help="directory of *.parquet files (id, vector)")
    ap.add_argument("--queries", required=True, help="Parquet file of queries (id, vector)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", type=int_list, default=int_list("1,2,4,8,16,32,64"))
    ap.add_argument("--threads", type=int_list, default=int_list("1,2"))
    ap.add_argument(
        "--train-sample",
        type=int,
        default=None,
        help="rows sampled for IVF training (default 64*nlist, capped at n)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the training sample")
    ap.add_argument("--output", help="JSON file to write (default: stdout)")
    args = ap.parse_args()

    if args.k < 1 or args.nlist < 1:
        ap.error("--k and --nlist must be positive")

    t0 = time.perf_counter()
    ids, xb, files = read_lake(args.lake)
    _, xq = read_file(args.queries)
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    n, dim = xb.shape
    if xq.shape[1] != dim:
        raise SystemExit(f"queries have dimension {xq.shape[1]}, lake has {dim}")
    if n < args.k:
        raise SystemExit(f"lake has {n} rows, fewer than k={args.k}")
    if len(np.unique(ids)) != n:
        log("warning: lake ids are not unique (recall uses row indexes anyway)")
    log(
        f"read {n} vectors of dimension {dim} from {files} files and "
        f"{len(xq)} queries in {time.perf_counter() - t0:.2f}s"
    )

    build_threads = max(args.threads)
    results = []

    # Exact search: the ground truth, then its own speed.
    faiss.omp_set_num_threads(build_threads)
    start = time.perf_counter()
    flat = faiss.IndexFlatL2(dim)
    flat.add(xb)
    flat_build_s = time.perf_counter() - start
    _, truth = flat.search(xq, args.k)
    flat_bpv = serialized_bytes_per_vector(flat, n)
    log(f"IndexFlatL2 built in {flat_build_s:.3f}s, ground truth for {len(xq)} queries")
    for t in args.threads:
        faiss.omp_set_num_threads(t)
        m = measure(flat, xq, args.k, truth)
        log(
            f"IndexFlatL2 threads={t} recall={m['recall']:.4f} "
            f"qps_batch={m['qps_batch']:.1f} qps_single={m['qps_single']:.1f}"
        )
        results.append(
            {
                "index": "IndexFlatL2",
                "nlist": None,
                "nprobe": None,
                "threads": t,
                **m,
                "build_seconds": flat_build_s,
                "bytes_per_vector": flat_bpv,
            }
        )
    del flat

    # IVF-Flat.
    nlist = args.nlist
    sample_rows = min(n, args.train_sample if args.train_sample is not None else 64 * nlist)
    if sample_rows < nlist:
        raise SystemExit(f"{sample_rows} training rows is fewer than nlist={nlist}")
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(n, size=sample_rows, replace=False))
    xt = np.ascontiguousarray(xb[sample])

    faiss.omp_set_num_threads(build_threads)
    quantizer = faiss.IndexFlatL2(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_L2)
    start = time.perf_counter()
    ivf.train(xt)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    ivf.add(xb)
    add_s = time.perf_counter() - start
    del xt
    ivf_bpv = serialized_bytes_per_vector(ivf, n)
    log(
        f"IndexIVFFlat nlist={nlist} trained on {sample_rows} rows in {train_s:.3f}s, "
        f"added in {add_s:.3f}s, {ivf_bpv:.1f} bytes/vector"
    )

    for nprobe in args.nprobe:
        if nprobe > nlist:
            log(f"IVF skipping nprobe={nprobe} > nlist={nlist}")
            continue
        ivf.nprobe = nprobe
        for t in args.threads:
            faiss.omp_set_num_threads(t)
            m = measure(ivf, xq, args.k, truth)
            log(
                f"IVF nprobe={nprobe} threads={t} recall={m['recall']:.4f} "
                f"qps_batch={m['qps_batch']:.1f} qps_single={m['qps_single']:.1f}"
            )
            results.append(
                {
                    "index": "IndexIVFFlat",
                    "nlist": nlist,
                    "nprobe": nprobe,
                    "threads": t,
                    **m,
                    "build_seconds": train_s + add_s,
                    "train_seconds": train_s,
                    "add_seconds": add_s,
                    "bytes_per_vector": ivf_bpv,
                }
            )

    report = {
        "n": int(n),
        "dim": int(dim),
        "k": args.k,
        "queries": int(len(xq)),
        "single_queries": int(min(len(xq), SINGLE_QUERY_LIMIT)),
        "train_sample": int(sample_rows),
        "build_threads": build_threads,
        "faiss_version": faiss.__version__,
        "cpu": cpu_model(),
        "results": results,
    }
    text = json.dumps(report, indent=2, allow_nan=False)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
        log(f"wrote {args.output}")
    else:
        print(text)


if __name__ == "__main__":
    main()
