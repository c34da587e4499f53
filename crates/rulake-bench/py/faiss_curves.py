#!/usr/bin/env python3
"""FAISS's recall/queries-per-second curves for `rulake-bench embeddings`.

Reads the same lake and query file RuLake is measured on (see
`faiss_bench.py` for the file layout) and sweeps, on one thread and one
query at a time (plus a batch on every thread):

* IVF-Flat (`nlist` lists) over nprobe;
* IVF-RaBitQ with an exact refinement (`IVF<nlist>,RaBitQ,Refine(Flat)`)
  over nprobe x k_factor, and the same with FastScan codes (`RaBitQfs`);
* HNSW (`HNSW<M>,Flat`, efConstruction 40) over efSearch, with its build
  time on every thread.

For `--metric cosine` vectors and queries are normalised and searched by
L2, which orders them as cosine does. Recall@k is against FAISS's own
exact search on the same data, by row (row order: the lake's files sorted
by name, concatenated; RuLake's lakes number ids the same way).

Progress goes to stderr; the JSON result to `--output`.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import faiss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faiss_bench import cpu_model, int_list, measure, read_file, read_lake  # noqa: E402


def log(msg):
    print(f"faiss: {msg}", file=sys.stderr, flush=True)


def point(index_name, setting, m, build_s, **extra):
    log(
        f"{index_name} {setting}: recall={m['recall']:.4f} "
        f"qps_single={m['qps_single']:.0f} qps_batch={m['qps_batch']:.0f}"
    )
    return {"index": index_name, "setting": setting, **m, "build_seconds": build_s, **extra}


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--metric", choices=["l2", "cosine"], default="l2")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nlist", type=int, required=True)
    ap.add_argument("--nprobe", type=int_list, default=int_list("4,8,12,16,24,32,48,64,96,128"))
    ap.add_argument("--k-factor", type=int_list, default=int_list("2,4,10"))
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef", type=int_list, default=int_list("10,16,24,32,48,64,96,128,256"))
    ap.add_argument("--output", required=True)
    args = ap.parse_args()

    threads = os.cpu_count() or 1
    _, xb, files = read_lake(args.lake)
    _, xq = read_file(args.queries)
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    if args.metric == "cosine":
        faiss.normalize_L2(xb)
        faiss.normalize_L2(xq)
    n, dim = xb.shape
    log(f"{n} vectors of dimension {dim} from {files} files, {len(xq)} queries")

    faiss.omp_set_num_threads(threads)
    flat = faiss.IndexFlatL2(dim)
    flat.add(xb)
    _, truth = flat.search(xq, args.k)
    del flat

    def sweep(index, name, build_s, settings):
        out = []
        for setting, apply in settings:
            apply()
            faiss.omp_set_num_threads(1)
            single = measure(index, xq, args.k, truth)
            faiss.omp_set_num_threads(threads)
            batch = measure(index, xq, args.k, truth)
            m = {
                "recall": single["recall"],
                "qps_single": single["qps_single"],
                "qps_batch": batch["qps_batch"],
            }
            out.append(point(name, setting, m, build_s))
        return out

    results = []
    nprobes = [p for p in args.nprobe if p <= args.nlist]

    # IVF-Flat.
    faiss.omp_set_num_threads(threads)
    ivf = faiss.index_factory(dim, f"IVF{args.nlist},Flat")
    build = timed(lambda: (ivf.train(xb), ivf.add(xb)))
    results += sweep(
        ivf,
        "IVF-Flat",
        build,
        [(f"nprobe {p}", (lambda p=p: setattr(ivf, "nprobe", p))) for p in nprobes],
    )
    del ivf

    # IVF-RaBitQ + exact refinement, with and without FastScan.
    for codes, name in [("RaBitQ", "IVF-RaBitQ+Refine"), ("RaBitQfs", "IVF-RaBitQfs+Refine")]:
        faiss.omp_set_num_threads(threads)
        try:
            rq = faiss.index_factory(dim, f"IVF{args.nlist},{codes},Refine(Flat)")
        except RuntimeError as e:
            log(f"{name} not available in this FAISS: {e}")
            continue
        build = timed(lambda: (rq.train(xb), rq.add(xb)))
        base = faiss.extract_index_ivf(rq)

        def setter(p, f):
            def apply():
                base.nprobe = p
                rq.k_factor = f
            return apply

        results += sweep(
            rq,
            name,
            build,
            [(f"nprobe {p}, k_factor {f}", setter(p, f)) for p in nprobes for f in args.k_factor],
        )
        del rq, base

    # HNSW.
    faiss.omp_set_num_threads(threads)
    hnsw = faiss.IndexHNSWFlat(dim, args.hnsw_m)
    hnsw.hnsw.efConstruction = 40
    build = timed(lambda: hnsw.add(xb))
    log(f"HNSW{args.hnsw_m} built in {build:.2f}s on {threads} threads")
    results += sweep(
        hnsw,
        f"HNSW{args.hnsw_m}",
        build,
        [(f"ef {e}", (lambda e=e: setattr(hnsw.hnsw, "efSearch", e))) for e in args.ef],
    )

    report = {
        "n": int(n),
        "dim": int(dim),
        "k": args.k,
        "nlist": args.nlist,
        "metric": args.metric,
        "threads": threads,
        "faiss_version": faiss.__version__,
        "cpu": cpu_model(),
        "results": results,
    }
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2, allow_nan=False)
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
