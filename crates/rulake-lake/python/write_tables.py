"""Write Delta and Iceberg tables with the reference Python writers.

RuLake's tests and benchmark hand this script Parquet files of
(id, vector) rows; it appends their rows to a table through `deltalake` or
`pyiceberg`, so the tables RuLake reads are written the way users' tables
are, not by RuLake itself. Vectors are cast to list<float> (neither format
has a fixed-size list); ids stay integers unless --string-ids is given.

    write_tables.py check
    write_tables.py delta-append TABLE_URI [--string-ids] FILE...
    write_tables.py delta-delete TABLE_URI PREDICATE
    write_tables.py delta-checkpoint TABLE_URI
    write_tables.py iceberg-append WAREHOUSE_DIR NAMESPACE.TABLE [--string-ids] FILE...

iceberg-append uses a SQL catalog over SQLite in WAREHOUSE_DIR/catalog.db
and prints the table's new metadata location on its last line.
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


def main(argv):
    cmd = argv[0]
    if cmd == "check":
        import deltalake  # noqa: F401
        import pyiceberg  # noqa: F401
        import pyiceberg.catalog.sql  # noqa: F401
        print("ok")
    elif cmd == "delta-append":
        from deltalake import write_deltalake

        string_ids, rest = split_flags(argv[1:])
        uri, files = rest[0], rest[1:]
        write_deltalake(uri, load(files, string_ids), mode="append")
    elif cmd == "delta-delete":
        from deltalake import DeltaTable

        DeltaTable(argv[1]).delete(argv[2])
    elif cmd == "delta-checkpoint":
        from deltalake import DeltaTable

        DeltaTable(argv[1]).create_checkpoint()
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
