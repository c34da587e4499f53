"""A small RuLake client in Python, over stubs generated from the proto.

The stubs are generated, never written by hand: `generate()` runs
grpcio-tools' protoc on `proto/rulake/v1/rulake.proto` into a directory of
your choice (a build or test step), and this file imports them from there.

    pip install grpcio grpcio-tools
    python clients/python/rulake_example.py --addr 127.0.0.1:50051 --out /tmp/rulake-py

The example creates a managed collection, ingests vectors, searches them,
deletes one and checks that it is gone, then drops the collection. It exits
non-zero if any answer is wrong, so it doubles as an end-to-end test.
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


def ingest_requests(pb, collection, rows, batch=100):
    """The Ingest stream: a header, then batches of records."""
    yield pb.IngestRequest(header=pb.IngestHeader(collection=collection))
    for i in range(0, len(rows), batch):
        yield pb.IngestRequest(
            batch=pb.IngestBatch(
                records=[
                    pb.Record(id=pb.VectorId(num=rid), vector=pb.Vector(values=v))
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
            )
        ),
        timeout=30,
    )
    rng = random.Random(7)
    rows = [(i, [rng.random() for _ in range(dim)]) for i in range(n)]
    done = data.Ingest(ingest_requests(pb, name, rows), timeout=60)
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
    print("ok")


if __name__ == "__main__":
    main()
