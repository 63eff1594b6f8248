#!/usr/bin/env python3
"""What a user would run instead of gleap-etl for a local conversion: DuckDB's COPY.

The same four stages as benches/compare/convert.yaml (and benches/common/mod.rs
pipeline_yaml), in SQL:

    filter:  '.email != null'                            -> WHERE email IS NOT NULL
    rename:  id -> userId, plan/seats -> customData.*    -> AS userId, {'plan': .., 'seats': ..}
    cast:    signup: timestamp, score: float             -> CAST(.. AS TIMESTAMPTZ / DOUBLE)
    default: country: unknown                            -> coalesce(country, 'unknown')

and the same output: zstd Parquet, columns typed as gleap-etl types them (userId BIGINT,
signup a UTC timestamp, customData a struct). Column types of the CSV are inferred by both.

    duckdb_convert.py IN.csv OUT.parquet [--threads N]
    duckdb_convert.py IN.parquet OUT.parquet [--threads N]   the same from Parquet
    duckdb_convert.py --raw IN.csv OUT.parquet          the CSV as it is, as zstd Parquet
    duckdb_convert.py --compare A.parquet B.parquet     same rows in both (in any order)?
"""

import json
import sys
import time

import duckdb


COLUMNS = "userId, email, name, signup, country, active, score, tags, customData"


def compare(a, b):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    result = {}
    for name, path in (("a", a), ("b", b)):
        path_sql = path.replace("'", "''")
        rows, digest = con.execute(
            f"SELECT count(*), bit_xor(hash({COLUMNS})) FROM read_parquet('{path_sql}')"
        ).fetchone()
        types = con.execute(
            f"SELECT string_agg(column_name || ' ' || column_type, ', ') "
            f"FROM (DESCRIBE SELECT {COLUMNS} FROM read_parquet('{path_sql}'))"
        ).fetchone()[0]
        result[name] = {"path": path, "rows": rows, "digest": str(digest), "types": types}
    result["same_rows"] = (
        result["a"]["rows"] == result["b"]["rows"]
        and result["a"]["digest"] == result["b"]["digest"]
    )
    print(json.dumps(result))


def raw(src, dst):
    con = duckdb.connect()
    src_sql = src.replace("'", "''")
    dst_sql = dst.replace("'", "''")
    con.execute(
        f"COPY (SELECT * FROM read_csv('{src_sql}', header = true)) "
        f"TO '{dst_sql}' (FORMAT parquet, COMPRESSION zstd)"
    )


def main():
    if sys.argv[1] == "--compare":
        return compare(sys.argv[2], sys.argv[3])
    if sys.argv[1] == "--raw":
        return raw(sys.argv[2], sys.argv[3])
    src, dst = sys.argv[1], sys.argv[2]
    threads = None
    if "--threads" in sys.argv:
        threads = int(sys.argv[sys.argv.index("--threads") + 1])
    started = time.monotonic()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {threads}")
    src_sql = src.replace("'", "''")
    dst_sql = dst.replace("'", "''")
    reader = (
        f"read_parquet('{src_sql}')"
        if src.endswith(".parquet")
        else f"read_csv('{src_sql}', header = true)"
    )
    con.execute(
        f"""
        COPY (
            SELECT
                id AS userId,
                email,
                name,
                CAST(signup AS TIMESTAMPTZ) AS signup,
                coalesce(country, 'unknown') AS country,
                active,
                CAST(score AS DOUBLE) AS score,
                tags,
                {{'plan': plan, 'seats': seats}} AS customData
            FROM {reader}
            WHERE email IS NOT NULL
        ) TO '{dst_sql}' (FORMAT parquet, COMPRESSION zstd)
        """
    )
    elapsed = time.monotonic() - started
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{dst_sql}')").fetchone()[0]
    print(
        json.dumps(
            {
                "elapsed_secs": elapsed,
                "rows": rows,
                "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
                "duckdb": duckdb.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
