"""Write Delta and Iceberg tables with the reference Python writers.

RuLake's tests and benchmark hand this script Parquet files of
(id, vector) rows; it appends their rows to a table through `deltalake` or
`pyiceberg`, so the tables RuLake reads are written the way users' tables
are, not by RuLake itself. Vectors are cast to list<float> (neither format
has a fixed-size list); ids stay integers unless --string-ids is given.

    write_tables.py check
    write_tables.py delta-append TABLE_URI [--string-ids] [--dv] FILE...
    write_tables.py delta-delete TABLE_URI PREDICATE
    write_tables.py delta-checkpoint TABLE_URI
    write_tables.py delta-dv TABLE_DIR STORAGE_TYPE ID...
    write_tables.py iceberg-append WAREHOUSE_DIR NAMESPACE.TABLE [--string-ids] FILE...
    write_tables.py iceberg-delete-positions WAREHOUSE_DIR NAMESPACE.TABLE ID...
    write_tables.py iceberg-delete-equality WAREHOUSE_DIR NAMESPACE.TABLE COLUMN ID...
    write_tables.py iceberg-delete-puffin WAREHOUSE_DIR NAMESPACE.TABLE
    write_tables.py iceberg-drop WAREHOUSE_DIR NAMESPACE.TABLE
    write_tables.py payload-write parquet|delta|iceberg OUT ROWS_JSONL PIECES [--partition-by COLUMN] [--row-group-rows N]

iceberg-* commands use a SQL catalog named "rulake" over SQLite in
WAREHOUSE_DIR/catalog.db and print the table's new metadata location on
their last line.

Which writer writes what: appends, copy-on-write deletes and checkpoints
are the reference writers' own (deltalake, pyiceberg). Neither can write
row-level deletes (deltalake 1.6 rewrites files even with deletion vectors
enabled; pyiceberg 0.12 falls back to copy-on-write under
write.delete.mode=merge-on-read), so delta-dv and iceberg-delete-* write the
delete files here, following the specs (Delta PROTOCOL.md "Deletion
Vectors" and "Deletion Vector Format"; Iceberg spec "Position Delete
Files" and "Equality Delete Files"): the Roaring bitmaps come from
pyroaring (CRoaring), Parquet from pyarrow, and the Iceberg manifests,
manifest list, metadata and catalog commit from pyiceberg's own snapshot
producer, on top of a table the reference writer created.
"""

import sys


def load(files, string_ids):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(f) for f in files]
    t = pa.concat_tables(tables)
    ids = t.column("id")
    ids = ids.cast(pa.string()) if string_ids else ids.cast(pa.int64())
    vec = t.column("vector").cast(pa.list_(pa.float32()))
    return pa.table({"id": ids, "vector": vec})


def split_flags(args):
    flags = [a for a in args if a.startswith("--")]
    rest = [a for a in args if not a.startswith("--")]
    return "--string-ids" in flags, rest


Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def z85_encode(data):
    assert len(data) % 4 == 0
    out = []
    for i in range(0, len(data), 4):
        v = int.from_bytes(data[i : i + 4], "big")
        chunk = []
        for _ in range(5):
            chunk.append(Z85[v % 85])
            v //= 85
        out.extend(reversed(chunk))
    return "".join(out)


def roaring_array(positions):
    """Delta's RoaringBitmapArray: magic, then the 64-bit portable format
    (bucket count, then per bucket its key and a 32-bit Roaring bitmap as
    CRoaring serializes it)."""
    import struct

    import pyroaring

    buckets = {}
    for p in sorted(positions):
        buckets.setdefault(p >> 32, []).append(p & 0xFFFFFFFF)
    out = struct.pack("<I", 1681511377) + struct.pack("<Q", len(buckets))
    for key in sorted(buckets):
        bm = pyroaring.BitMap(buckets[key])
        bm.run_optimize()
        out += struct.pack("<I", key) + bm.serialize()
    return out


def delta_live_files(table_dir):
    """The live add actions of a table, by replaying its JSON commits (the
    test tables have no checkpoint when this is used)."""
    import glob
    import json
    import os

    live = {}
    commits = sorted(glob.glob(os.path.join(table_dir, "_delta_log", "*.json")))
    for c in commits:
        with open(c) as f:
            for line in f:
                if not line.strip():
                    continue
                a = json.loads(line)
                if "add" in a:
                    live[a["add"]["path"]] = a["add"]
                elif "remove" in a:
                    live.pop(a["remove"]["path"], None)
    return live, len(commits) - 1


def delta_dv(table_dir, storage, ids):
    """Delete rows by id through deletion vectors (one new commit)."""
    import json
    import os
    import struct
    import time
    import urllib.parse
    import uuid
    import zlib

    import pyarrow.parquet as pq

    table_dir = os.path.abspath(table_dir)
    live, version = delta_live_files(table_dir)
    ids = set(ids)
    now = int(time.time() * 1000)
    actions = [
        {
            "commitInfo": {
                "timestamp": now,
                "operation": "DELETE",
                "operationParameters": {"predicate": "id IN (...)"},
                "engineInfo": "rulake write_tables.py delta-dv",
            }
        }
    ]
    for path, add in sorted(live.items()):
        file_ids = pq.read_table(os.path.join(table_dir, urllib.parse.unquote(path)), columns=["id"]).column("id")
        positions = [i for i, v in enumerate(file_ids.to_pylist()) if v in ids]
        if not positions:
            continue
        if add.get("deletionVector"):
            sys.exit(f"{path} already has a deletion vector; this writer does not merge vectors")
        data = roaring_array(positions)
        if storage == "i":
            padded = data + b"\0" * (-len(data) % 4)
            dv = {"storageType": "i", "pathOrInlineDv": z85_encode(padded), "sizeInBytes": len(data)}
        else:
            u = uuid.uuid4()
            prefix = "dv" if storage == "u" else ""
            dv_dir = os.path.join(table_dir, prefix)
            os.makedirs(dv_dir, exist_ok=True)
            dv_file = os.path.join(dv_dir, f"deletion_vector_{u}.bin")
            with open(dv_file, "wb") as f:
                f.write(bytes([1]))
                f.write(struct.pack(">I", len(data)) + data + struct.pack(">I", zlib.crc32(data)))
            where = prefix + z85_encode(u.bytes) if storage == "u" else "file://" + urllib.parse.quote(dv_file)
            dv = {"storageType": storage, "pathOrInlineDv": where, "offset": 1, "sizeInBytes": len(data)}
        dv["cardinality"] = len(positions)
        remove = {
            "path": path,
            "deletionTimestamp": now,
            "dataChange": True,
            "extendedFileMetadata": True,
            "partitionValues": add.get("partitionValues", {}),
            "size": add["size"],
        }
        actions.append({"remove": remove})
        actions.append({"add": dict(add, dataChange=True, deletionVector=dv)})
    if len(actions) == 1:
        sys.exit("no row matched")
    log = os.path.join(table_dir, "_delta_log", f"{version + 1:020}.json")
    with open(log, "x") as f:
        for a in actions:
            f.write(json.dumps(a) + "\n")


def iceberg_catalog(warehouse):
    import os

    from pyiceberg.catalog.sql import SqlCatalog

    warehouse = os.path.abspath(warehouse)
    os.makedirs(warehouse, exist_ok=True)
    return SqlCatalog(
        "rulake",
        uri=f"sqlite:///{warehouse}/catalog.db",
        warehouse=f"file://{warehouse}",
    )


def iceberg_commit_deletes(table, delete_files):
    """Commit delete files in a new delete manifest, through pyiceberg's
    own snapshot producer (manifest list, metadata, catalog commit); the
    data manifests of the parent snapshot are kept as they are."""
    from pyiceberg.manifest import ManifestContent, ManifestEntry, ManifestEntryStatus, ManifestWriterV2
    from pyiceberg.table.snapshots import Operation
    from pyiceberg.table.update.snapshot import _FastAppendFiles

    class DeleteManifestWriter(ManifestWriterV2):
        def content(self):
            return ManifestContent.DELETES

        @property
        def _meta(self):
            return {**super()._meta, "content": "deletes"}

    class AddDeleteFiles(_FastAppendFiles):
        def _manifests(self):
            existing = self._existing_manifests()
            with DeleteManifestWriter(
                spec=self._transaction.table_metadata.spec(),
                schema=self.schema(),
                output_file=self.new_manifest_output(),
                snapshot_id=self._snapshot_id,
                avro_compression=self._compression,
            ) as writer:
                for f in delete_files:
                    writer.add(
                        ManifestEntry.from_args(
                            status=ManifestEntryStatus.ADDED,
                            snapshot_id=self._snapshot_id,
                            sequence_number=None,
                            file_sequence_number=None,
                            data_file=f,
                        )
                    )
            return [writer.to_manifest_file()] + existing

    with table.transaction() as tx:
        AddDeleteFiles(operation=Operation.DELETE, transaction=tx, io=table.io).commit()


def local(uri):
    return uri[len("file://") :] if uri.startswith("file://") else uri


def iceberg_delete_file(table, content, arrow_table, equality_ids=None):
    import os
    import uuid

    import pyarrow.parquet as pq
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    path = f"{table.location()}/data/{uuid.uuid4()}-deletes.parquet"
    pq.write_table(arrow_table, local(path))
    return DataFile.from_args(
        content=content,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=Record(),
        record_count=arrow_table.num_rows,
        file_size_in_bytes=os.path.getsize(local(path)),
        equality_ids=equality_ids,
    )


def iceberg_delete_positions(table, ids):
    """A position delete file (file_path, pos; reserved field ids
    2147483546 and 2147483545), sorted by file_path then pos."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyiceberg.manifest import DataFileContent

    ids = set(ids)
    rows = []
    for task in table.scan().plan_files():
        path = task.file.file_path
        file_ids = pq.read_table(local(path), columns=["id"]).column("id").to_pylist()
        rows.extend((path, i) for i, v in enumerate(file_ids) if v in ids)
    if not rows:
        sys.exit("no row matched")
    rows.sort()
    schema = pa.schema(
        [
            pa.field("file_path", pa.string(), nullable=False, metadata={b"PARQUET:field_id": b"2147483546"}),
            pa.field("pos", pa.int64(), nullable=False, metadata={b"PARQUET:field_id": b"2147483545"}),
        ]
    )
    t = pa.table({"file_path": [r[0] for r in rows], "pos": [r[1] for r in rows]}, schema=schema)
    return [iceberg_delete_file(table, DataFileContent.POSITION_DELETES, t)]


def iceberg_delete_equality(table, column, ids):
    """An equality delete file on `column` (its field id in equality_ids)."""
    import pyarrow as pa
    from pyiceberg.manifest import DataFileContent

    field = table.schema().find_field(column)
    id_type = pa.string() if str(table.schema().find_field("id").field_type) == "string" else pa.int64()
    values = [str(i) for i in ids] if id_type == pa.string() else list(ids)
    schema = pa.schema([pa.field("id", id_type, nullable=False, metadata={b"PARQUET:field_id": str(table.schema().find_field("id").field_id).encode()})])
    t = pa.table({"id": values}, schema=schema)
    return [iceberg_delete_file(table, DataFileContent.EQUALITY_DELETES, t, equality_ids=[field.field_id])]


def iceberg_delete_puffin(table):
    """A format-v3 style deletion vector entry (a Puffin position delete);
    RuLake must refuse it before reading the file."""
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    return [
        DataFile.from_args(
            content=DataFileContent.POSITION_DELETES,
            file_path=f"{table.location()}/data/dv.puffin",
            file_format=FileFormat.PUFFIN,
            partition=Record(),
            record_count=1,
            file_size_in_bytes=1,
        )
    ]


def payload_schema():
    import pyarrow as pa

    # The payload types a collection may keep, one column each, in the
    # widths real tables use (int32 years, microsecond UTC timestamps).
    return pa.schema(
        [
            ("id", pa.int64()),
            ("vector", pa.list_(pa.float32())),
            ("lang", pa.string()),
            ("year", pa.int32()),
            ("score", pa.float64()),
            ("flag", pa.bool_()),
            ("published", pa.timestamp("us", tz="UTC")),
            ("day", pa.date32()),
            ("tags", pa.list_(pa.string())),
            ("title", pa.string()),
        ]
    )


def payload_write(fmt, out, rows_path, pieces, partition_by=None, row_group_rows=None):
    """Write the rows of a JSON-lines file (one object per row, keys as in
    payload_schema; timestamps as microseconds, dates as days) as `pieces`
    Parquet files written by pyarrow, `pieces` commits to a Delta table
    written by deltalake, or `pieces` appends to the Iceberg table
    `payload.items` of a SQL catalog in OUT written by pyiceberg (printing
    its metadata location). With partition_by, the Delta or Iceberg table
    is partitioned by that column (identity); with row_group_rows, Parquet
    files get row groups of that many rows."""
    import json
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(rows_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    schema = payload_schema()
    step = max(1, -(-len(rows) // pieces))
    table_ice = None
    for i, start in enumerate(range(0, len(rows), step)):
        chunk = rows[start : start + step]
        table = pa.table(
            {f.name: pa.array([r.get(f.name) for r in chunk], type=f.type) for f in schema},
            schema=schema,
        )
        if fmt == "parquet":
            os.makedirs(out, exist_ok=True)
            pq.write_table(
                table, os.path.join(out, f"part-{i:03}.parquet"), row_group_size=row_group_rows
            )
        elif fmt == "delta":
            from deltalake import write_deltalake

            write_deltalake(
                out, table, mode="append", partition_by=[partition_by] if partition_by else None
            )
        else:
            if table_ice is None:
                catalog = iceberg_catalog(out)
                catalog.create_namespace_if_not_exists("payload")
                table_ice = catalog.create_table("payload.items", schema=schema)
                if partition_by:
                    with table_ice.update_spec() as spec:
                        spec.add_identity(partition_by)
            table_ice.append(table)
    if table_ice is not None:
        print(iceberg_catalog(out).load_table("payload.items").metadata_location)


def main(argv):
    cmd = argv[0]
    if cmd == "check":
        import deltalake  # noqa: F401
        import pyiceberg  # noqa: F401
        import pyiceberg.catalog.sql  # noqa: F401
        import pyroaring  # noqa: F401
        print("ok")
    elif cmd == "delta-append":
        from deltalake import write_deltalake

        string_ids, rest = split_flags(argv[1:])
        uri, files = rest[0], rest[1:]
        # --dv: create the table with deletion vectors enabled (protocol
        # reader/writer feature deletionVectors).
        config = {"delta.enableDeletionVectors": "true"} if "--dv" in argv else None
        write_deltalake(uri, load(files, string_ids), mode="append", configuration=config)
    elif cmd == "payload-write":
        opts = dict(zip(argv[5::2], argv[6::2]))
        rg = opts.get("--row-group-rows")
        payload_write(
            argv[1], argv[2], argv[3], int(argv[4]), opts.get("--partition-by"), int(rg) if rg else None
        )
    elif cmd == "delta-delete":
        from deltalake import DeltaTable

        DeltaTable(argv[1]).delete(argv[2])
    elif cmd == "delta-checkpoint":
        from deltalake import DeltaTable

        DeltaTable(argv[1]).create_checkpoint()
    elif cmd == "delta-dv":
        delta_dv(argv[1], argv[2], [int(x) for x in argv[3:]])
    elif cmd in ("iceberg-delete-positions", "iceberg-delete-equality", "iceberg-delete-puffin"):
        catalog = iceberg_catalog(argv[1])
        table = catalog.load_table(argv[2])
        if cmd == "iceberg-delete-positions":
            files = iceberg_delete_positions(table, [int(x) for x in argv[3:]])
        elif cmd == "iceberg-delete-equality":
            files = iceberg_delete_equality(table, argv[3], [int(x) for x in argv[4:]])
        else:
            files = iceberg_delete_puffin(table)
        iceberg_commit_deletes(table, files)
        print(catalog.load_table(argv[2]).metadata_location)
    elif cmd == "iceberg-drop":
        # SqlCatalog.drop_table removes the catalog row only (no purge).
        iceberg_catalog(argv[1]).drop_table(argv[2])
    elif cmd == "iceberg-append":
        import os

        from pyiceberg.catalog.sql import SqlCatalog

        string_ids, rest = split_flags(argv[1:])
        warehouse, name, files = rest[0], rest[1], rest[2:]
        warehouse = os.path.abspath(warehouse)
        os.makedirs(warehouse, exist_ok=True)
        catalog = SqlCatalog(
            "rulake",
            uri=f"sqlite:///{warehouse}/catalog.db",
            warehouse=f"file://{warehouse}",
        )
        data = load(files, string_ids)
        namespace = name.split(".")[0]
        catalog.create_namespace_if_not_exists(namespace)
        # Check first: create_table_if_not_exists would leave an orphan
        # metadata file behind when the table exists.
        if catalog.table_exists(name):
            table = catalog.load_table(name)
        else:
            table = catalog.create_table(name, schema=data.schema)
        table.append(data)
        print(catalog.load_table(name).metadata_location)
    else:
        sys.exit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
