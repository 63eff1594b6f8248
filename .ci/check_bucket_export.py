"""Reads a sessions dataset exported to a bucket on moto (the files its manifest names) with
pyarrow's S3 filesystem, and with DuckDB's httpfs where that extension can be loaded, and
checks rows, one per _id, and that the prefix holds nothing the manifest does not name.

    python3 .ci/check_bucket_export.py ENDPOINT BUCKET PREFIX EXPECTED_ROWS
    (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION)
"""
import json
import os
import sys


def load_httpfs(con):
    """httpfs as DuckDB installs it, or from the duckdb-extension-httpfs package (PyPI) for
    this DuckDB version, where DuckDB cannot download extensions (this machine)."""
    import duckdb

    try:
        con.execute("LOAD httpfs")
    except Exception as first:
        try:
            import duckdb_extension_httpfs

            path = os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions",
                                f"v{duckdb.__version__}", "httpfs.duckdb_extension")
            con.execute(f"LOAD '{path}'")
        except Exception:
            raise first


def main():
    endpoint, bucket, prefix, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    import pyarrow.dataset as ds
    import pyarrow.fs as fs

    s3 = fs.S3FileSystem(access_key=key, secret_key=secret, region=region,
                         endpoint_override=endpoint, scheme="http")
    root = f"{bucket}/{prefix}"
    manifest = json.loads(s3.open_input_stream(f"{root}/_manifest.json").read())
    files = [f"{root}/{f}" for f in manifest["files"]]
    listed = sorted(i.path for i in s3.get_file_info(fs.FileSelector(root, recursive=True)) if i.is_file)
    assert listed == sorted(files + [f"{root}/_manifest.json"]), listed
    table = ds.dataset(files, filesystem=s3, format="parquet").to_table()
    assert table.num_rows == expected, table.num_rows
    assert len(set(table.column("_id").to_pylist())) == expected
    print(f"bucket export: pyarrow read {table.num_rows} rows from s3://{root}")
    try:
        import duckdb

        con = duckdb.connect()
        load_httpfs(con)
    except Exception as e:  # the extension is downloaded on first use: offline it is not there
        print(f"bucket export: duckdb httpfs not loadable here, skipped ({str(e).splitlines()[0]})")
        return
    host = endpoint.split("://", 1)[1]
    con.execute(f"SET s3_endpoint='{host}'; SET s3_use_ssl=false; SET s3_url_style='path';"
                f"SET s3_access_key_id='{key}'; SET s3_secret_access_key='{secret}'; SET s3_region='{region}'")
    urls = ", ".join(f"'s3://{f}'" for f in files)
    rows, ids = con.execute(f"select count(*), count(distinct _id) from read_parquet([{urls}])").fetchall()[0]
    assert (rows, ids) == (expected, expected), (rows, ids)
    print(f"bucket export: duckdb {duckdb.__version__} (httpfs) read {rows} rows")


if __name__ == "__main__":
    main()
