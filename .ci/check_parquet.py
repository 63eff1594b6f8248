"""Reads the users sample output with pyarrow and DuckDB and checks its types and rows."""
import json
import sys

parquet_path, dead_letter_path = sys.argv[1], sys.argv[2]
checked = []
try:
    import pyarrow.parquet as pq

    table = pq.read_table(parquet_path)
    schema = {f.name: str(f.type) for f in table.schema}
    assert table.num_rows == 8, table.num_rows
    assert schema["signup"] == "timestamp[us, tz=UTC]", schema
    assert schema["tags"].startswith("list<"), schema
    assert schema["customData"] == "struct<seats: int64, plan: string>", schema
    checked.append("pyarrow")
except ImportError:
    print("pyarrow not installed: skipped")
try:
    import duckdb

    rows = duckdb.sql(
        "select userId, customData.seats, typeof(signup), strftime(signup, '%Y-%m-%d %H:%M'), tags"
        f" from '{parquet_path}' order by userId"
    ).fetchall()
    assert len(rows) == 8, rows
    assert rows[0] == ("u001", 12, "TIMESTAMP WITH TIME ZONE", "2024-01-15 09:30", ["vip", "beta"]), rows[0]
    checked.append("duckdb")
except ImportError:
    print("duckdb not installed: skipped")

dead = [json.loads(line) for line in open(dead_letter_path, encoding="utf-8")]
assert len(dead) == 1 and dead[0]["line"] == 9, dead
print(f"interoperability ok ({', '.join(checked) or 'no readers'}): 8 rows, typed; ragged row at line 9")
