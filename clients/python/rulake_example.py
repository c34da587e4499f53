"""A small RuLake client in Python, over stubs generated from the proto.

The stubs are generated, never written by hand: `generate()` runs
grpcio-tools' protoc on `proto/rulake/v1/rulake.proto` into a directory of
your choice (a build or test step), and this file imports them from there.

    pip install grpcio grpcio-tools
    python clients/python/rulake_example.py --addr 127.0.0.1:50051 --out /tmp/rulake-py

The example creates a managed collection with two typed payload columns,
ingests vectors with their values, searches them (with and without a
filter), deletes one and checks that it is gone, then drops the collection. It exits
non-zero if any answer is wrong, so it doubles as an end-to-end test.

Given a Parquet table with `lang`, `year` and `title` columns and its rows
as JSON lines (`--filter-table URL --filter-rows FILE`), it also searches
it with filters (`rulake_filter`: an expression builder, and JSON) and
output columns, checking every answer against a filtered exact scan.
"""

import argparse
import importlib
import os
import random
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generate(out_dir):
    """Generate the rulake.v1 stubs into out_dir and make them importable."""
    from grpc_tools import protoc

    os.makedirs(out_dir, exist_ok=True)
    proto_dir = os.path.join(REPO, "proto")
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            os.path.join(proto_dir, "rulake", "v1", "rulake.proto"),
        ]
    )
    if rc != 0:
        raise RuntimeError(f"protoc failed with {rc}")
    sys.path.insert(0, out_dir)
    pb = importlib.import_module("rulake.v1.rulake_pb2")
    rpc = importlib.import_module("rulake.v1.rulake_pb2_grpc")
    return pb, rpc


def ingest_requests(pb, collection, rows, columns, batch=100):
    """The Ingest stream: a header, then batches of records, each with its
    payload values (`columns(id)`: a dict of column name to Python value)."""
    from rulake_filter import value

    yield pb.IngestRequest(header=pb.IngestHeader(collection=collection))
    for i in range(0, len(rows), batch):
        yield pb.IngestRequest(
            batch=pb.IngestBatch(
                records=[
                    pb.Record(
                        id=pb.VectorId(num=rid),
                        vector=pb.Vector(values=v),
                        columns={k: value(pb, x) for k, x in columns(rid).items()},
                    )
                    for rid, v in rows[i : i + batch]
                ]
            )
        )


def l2(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--out", default=os.path.join(REPO, "target", "rulake-py"))
    ap.add_argument("--collection", default="py_example")
    ap.add_argument("--filter-table", help="URL of a Parquet table with lang, year, title")
    ap.add_argument("--filter-rows", help="its rows, as JSON lines")
    args = ap.parse_args()

    import grpc

    pb, rpc = generate(args.out)
    channel = grpc.insecure_channel(args.addr)
    collections = rpc.CollectionServiceStub(channel)
    search = rpc.SearchServiceStub(channel)
    data = rpc.DataServiceStub(channel)
    dim, n, name = 8, 500, args.collection

    collections.CreateCollection(
        pb.CreateCollectionRequest(
            spec=pb.CollectionSpec(
                name=name,
                source=pb.Source(managed=pb.ManagedSource()),
                dimension=dim,
                metric=pb.METRIC_L2,
                partitions=2,
                # A managed collection declares its columns' types.
                payload_columns=["lang:string", "year:int"],
            )
        ),
        timeout=30,
    )
    rng = random.Random(7)
    rows = [(i, [rng.random() for _ in range(dim)]) for i in range(n)]

    def columns(i):
        return {"lang": "en" if i % 3 == 0 else "de", "year": 2000 + i % 30}

    done = data.Ingest(ingest_requests(pb, name, rows, columns), timeout=60)
    assert done.records == n, done
    print(f"ingested {done.records} records, generation {done.generation}")

    query = rows[42][1]
    exhaustive = pb.SearchParams(k=5, nprobe=1 << 20, rerank=1 << 20)
    got = search.Search(
        pb.SearchRequest(collection=name, query=pb.Vector(values=query), params=exhaustive),
        timeout=30,
    )
    want = sorted(rows, key=lambda r: (l2(query, r[1]), r[0]))[:5]
    ids = [h.id.num for h in got.hits]
    assert ids == [r[0] for r in want], (ids, want)
    assert not got.partial and got.partitions_answered == got.partitions_total == 2
    print(f"search: {ids} from generation {got.generation}")

    from rulake_filter import col

    f = ((col("lang") == "en") & (col("year") >= 2020)).to_proto(pb)
    params = pb.SearchParams(
        k=5, nprobe=1 << 20, rerank=1 << 20, filter=f, output_columns=["lang", "year"]
    )
    got = search.Search(
        pb.SearchRequest(collection=name, query=pb.Vector(values=query), params=params),
        timeout=30,
    )
    match = [r for r in rows if columns(r[0])["lang"] == "en" and columns(r[0])["year"] >= 2020]
    want = sorted(match, key=lambda r: (l2(query, r[1]), r[0]))[:5]
    assert [h.id.num for h in got.hits] == [r[0] for r in want], (got.hits, want)
    for h in got.hits:
        assert h.columns["lang"].string_value == "en", h
        assert h.columns["year"].int_value == columns(h.id.num)["year"], h
    print(f"filtered search on the ingested columns: {[h.id.num for h in got.hits]}")

    deleted = data.Delete(
        pb.DeleteRequest(collection=name, ids=[pb.VectorId(num=42)]), timeout=30
    )
    assert deleted.tombstones_added == 1, deleted
    again = search.Search(
        pb.SearchRequest(collection=name, query=pb.Vector(values=query), params=exhaustive),
        timeout=30,
    )
    assert 42 not in [h.id.num for h in again.hits], again
    print("delete: id 42 is gone")

    try:
        search.Search(
            pb.SearchRequest(collection=name, query=pb.Vector(values=[1.0]), params=exhaustive),
            timeout=30,
        )
        raise AssertionError("a query of the wrong dimension was answered")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        print(f"wrong dimension: {e.code().name}: {e.details()}")

    collections.DropCollection(pb.DropCollectionRequest(name=name), timeout=30)
    if args.filter_table:
        filtered(pb, collections, search, args.filter_table, args.filter_rows)
    print("ok")


def filtered(pb, collections, search, url, rows_path):
    """Filtered searches with returned columns over a Parquet table, each
    checked against an exact scan of the matching rows."""
    import json

    from rulake_filter import col, from_json

    with open(rows_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    name = "py_filter"
    collections.CreateCollection(
        pb.CreateCollectionRequest(
            spec=pb.CollectionSpec(
                name=name,
                source=pb.Source(
                    parquet=pb.ParquetSource(url=url, id_column="id", vector_column="vector")
                ),
                dimension=len(rows[0]["vector"]),
                metric=pb.METRIC_L2,
                partitions=2,
                payload_columns=["lang", "year", "title"],
            )
        ),
        timeout=30,
    )
    query = rows[7]["vector"]
    cases = [
        (
            (col("lang") == "en") & (col("year") >= 2024),
            lambda r: r["lang"] == "en" and r["year"] is not None and r["year"] >= 2024,
        ),
        (
            col("lang").isin(["de", "fr"]) | col("lang").is_null(),
            lambda r: r["lang"] in ("de", "fr", None),
        ),
        (
            ~(col("year") < 2020) & col("title").startswith("doc 1"),
            lambda r: not (r["year"] is not None and r["year"] < 2020)
            and r["title"].startswith("doc 1"),
        ),
        (
            from_json(
                pb,
                {
                    "all": {
                        "filters": [
                            {"eq": {"column": "lang", "value": {"stringValue": "de"}}},
                            {"range": {"column": "year", "gt": {"intValue": "2019"}, "lte": {"intValue": "2022"}}},
                        ]
                    }
                },
            ),
            lambda r: r["lang"] == "de" and r["year"] is not None and 2019 < r["year"] <= 2022,
        ),
    ]
    for expr, matches in cases:
        f = expr if isinstance(expr, pb.Filter) else expr.to_proto(pb)
        params = pb.SearchParams(k=10, filter=f, output_columns=["lang", "year", "title"])
        got = search.Search(
            pb.SearchRequest(collection=name, query=pb.Vector(values=query), params=params),
            timeout=60,
        )
        want = sorted((l2(query, r["vector"]) for r in rows if matches(r)))[:10]
        by_id = {r["id"]: r for r in rows}
        assert len(got.hits) == len(want), (f, len(got.hits), len(want))
        for h, w in zip(got.hits, want):
            row = by_id[h.id.num]
            assert matches(row), (f, row)
            assert abs(h.distance - w) <= 1e-3 * max(w, 1.0), (f, h.distance, w)
            year = h.columns["year"]
            assert (year.int_value if year.WhichOneof("kind") == "int_value" else None) == row["year"]
            assert h.columns["title"].string_value == row["title"]
        print(f"filter: {len(got.hits)} hits, all matching, with their columns")
    collections.DropCollection(pb.DropCollectionRequest(name=name), timeout=30)
    print("filter: ok")


if __name__ == "__main__":
    main()
