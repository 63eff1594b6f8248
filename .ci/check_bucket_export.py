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


def s3_filesystem(endpoint):
    """pyarrow's S3 filesystem on ENDPOINT (http), credentials from the environment."""
    import pyarrow.fs as fs

    return fs.S3FileSystem(access_key=os.environ["AWS_ACCESS_KEY_ID"],
                           secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                           region=os.environ.get("AWS_REGION", "us-east-1"),
                           endpoint_override=endpoint, scheme="http")


def read_manifest(s3, root):
    return json.loads(s3.open_input_stream(f"{root}/_manifest.json").read())


def listed_files(s3, root):
    """Every object under ROOT, sorted."""
    import pyarrow.fs as fs

    return sorted(i.path for i in s3.get_file_info(fs.FileSelector(root, recursive=True))
                  if i.is_file)


def duckdb_on_s3(endpoint):
    """A DuckDB connection with httpfs loaded and pointed at ENDPOINT (path-style, http),
    credentials from the environment; raises where httpfs cannot be loaded."""
    import duckdb

    con = duckdb.connect()
    load_httpfs(con)
    host = endpoint.split("://", 1)[1]
    con.execute(f"SET s3_endpoint='{host}'; SET s3_use_ssl=false; SET s3_url_style='path';"
                f"SET s3_access_key_id='{os.environ['AWS_ACCESS_KEY_ID']}';"
                f"SET s3_secret_access_key='{os.environ['AWS_SECRET_ACCESS_KEY']}';"
                f"SET s3_region='{os.environ.get('AWS_REGION', 'us-east-1')}'")
    return con


def s3_urls(paths):
    """The SQL list of s3:// URLs of PATHS (bucket/key), for read_parquet."""
    return ", ".join(f"'s3://{p}'" for p in paths)


def main():
    endpoint, bucket, prefix, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    import pyarrow.dataset as ds

    s3 = s3_filesystem(endpoint)
    root = f"{bucket}/{prefix}"
    manifest = read_manifest(s3, root)
    files = [f"{root}/{f}" for f in manifest["files"]]
    listed = listed_files(s3, root)
    assert listed == sorted(files + [f"{root}/_manifest.json"]), listed
    table = ds.dataset(files, filesystem=s3, format="parquet").to_table()
    assert table.num_rows == expected, table.num_rows
    assert len(set(table.column("_id").to_pylist())) == expected
    print(f"bucket export: pyarrow read {table.num_rows} rows from s3://{root}")
    try:
        import duckdb

        con = duckdb_on_s3(endpoint)
    except Exception as e:  # the extension is downloaded on first use: offline it is not there
        print(f"bucket export: duckdb httpfs not loadable here, skipped ({str(e).splitlines()[0]})")
        return
    rows, ids = con.execute(
        f"select count(*), count(distinct _id) from read_parquet([{s3_urls(files)}])").fetchall()[0]
    assert (rows, ids) == (expected, expected), (rows, ids)
    print(f"bucket export: duckdb {duckdb.__version__} (httpfs) read {rows} rows")


if __name__ == "__main__":
    main()
