"""Reads an exported sessions dataset (the files its manifest names) with pyarrow and DuckDB
and checks rows, one per _id, and the declared types.

    python3 .ci/check_export.py DATASET_DIR EXPECTED_ROWS
"""
import json
import os
import sys

dataset, expected = sys.argv[1], int(sys.argv[2])
manifest = json.load(open(os.path.join(dataset, "_manifest.json")))
files = [os.path.join(dataset, f) for f in manifest["files"]]
assert manifest["rows"] == expected, manifest["rows"]
assert not [f for f in os.listdir(dataset) if f.endswith(".inprogress")]
checked = []
try:
    import pyarrow.parquet as pq

    table = pq.ParquetDataset(files).read()
    schema = {f.name: str(f.type) for f in table.schema}
    assert table.num_rows == expected, table.num_rows
    assert len(set(table.column("_id").to_pylist())) == expected
    assert schema["createdAt"] == "timestamp[us, tz=UTC]", schema["createdAt"]
    assert schema["updatedAt"] == "timestamp[us, tz=UTC]", schema["updatedAt"]
    assert "customData" in schema and schema["customData"] in ("string", "extension<arrow.json>"), schema["customData"]
    checked.append("pyarrow")
except ImportError:
    print("pyarrow not installed: skipped")
try:
    import duckdb

    listed = ", ".join(f"'{f}'" for f in files)
    rows, ids, kind, plan = duckdb.sql(
        f"select count(*), count(distinct _id), any_value(typeof(createdAt)),"
        f" count(json_extract_string(customData, '$.plan')) from read_parquet([{listed}])"
    ).fetchall()[0]
    assert (rows, ids) == (expected, expected), (rows, ids)
    assert kind == "TIMESTAMP WITH TIME ZONE", kind
    assert plan > 0, "customData holds the plan as JSON"
    checked.append("duckdb")
except ImportError:
    print("duckdb not installed: skipped")
print(f"export dataset ok ({', '.join(checked) or 'no reader installed'}): {expected} rows, one per _id, typed")
