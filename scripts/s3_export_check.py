"""Helpers of scripts/s3-export-acceptance.sh (run with a Python that has pyarrow and duckdb,
e.g. .ci/.venv-duckdb/bin/python).

    s3_export_check.py change GLEAP_BASE_URL CHANGED WITH_REGION
        PUTs a changed customData (seats + 1) to the first CHANGED sessions, the first
        WITH_REGION of them also gaining the custom field `region`; prints their ids as JSON.
    s3_export_check.py manifest ENDPOINT BUCKET PREFIX
        One line: the rows and parts the manifest names, and those of an export being built.
    s3_export_check.py check ENDPOINT BUCKET PREFIX SESSIONS CHANGED_IDS_FILE WITH_REGION
        Reads the dataset on the bucket with pyarrow and DuckDB (httpfs) and checks: the
        prefix holds only what the manifest names; the parts hold every session, the last
        part exactly the changed ones; old parts lack customData_region and the last has it
        typed; DuckDB union_by_name reads every part; the snapshot holds one row per session
        at its latest updatedAt.
(credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION; GLEAP_API_KEY,
GLEAP_PROJECT_ID for `change`)
"""
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".ci"))
from check_bucket_export import (  # noqa: E402
    duckdb_on_s3, listed_files, read_manifest, s3_filesystem, s3_urls)


def gleap(base, method, path, body=None):
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": "Bearer " + os.environ["GLEAP_API_KEY"],
            "project": os.environ["GLEAP_PROJECT_ID"],
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def change(base, changed, with_region):
    sessions = gleap(base, "GET", f"/sessions?limit={changed}&sort=createdAt")
    assert len(sessions) == changed, len(sessions)
    ids = []
    for i, s in enumerate(sessions):
        custom = dict(s.get("customData") or {})
        custom["seats"] = int(custom.get("seats") or 0) + 1
        if i < with_region:
            custom["region"] = "eu"
        gleap(base, "PUT", f"/sessions/{s['_id']}", {"customData": custom})
        ids.append(s["_id"])
    print(json.dumps(ids))


def check(endpoint, bucket, prefix, sessions, changed_file, with_region):
    import duckdb
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    changed = set(json.load(open(changed_file)))
    s3 = s3_filesystem(endpoint)
    root = f"{bucket}/{prefix}"
    manifest = read_manifest(s3, root)
    parts = [f"{root}/{f}" for f in manifest["files"]]
    snapshot = [f"{root}/{f}" for f in manifest["snapshot"]["files"]]
    listed = listed_files(s3, root)
    assert listed == sorted(parts + snapshot + [f"{root}/_manifest.json"]), listed
    print(f"prefix: {len(listed)} objects, each named by the manifest "
          f"({len(parts)} part files, {len(snapshot)} snapshot files)")

    table = ds.dataset(parts, filesystem=s3, format="parquet",
                       schema=None).to_table(columns=["_id"])
    ids = table.column("_id").to_pylist()
    assert len(set(ids)) == sessions, len(set(ids))
    assert len(ids) == sessions + len(changed), len(ids)
    last = parts[-1]
    last_ids = pq.read_table(last, filesystem=s3, columns=["_id"]).column("_id").to_pylist()
    assert set(last_ids) == changed and len(last_ids) == len(changed), len(last_ids)
    print(f"pyarrow: parts hold {len(ids)} rows, {len(set(ids))} distinct sessions; the last "
          f"part ({last.rsplit('/', 1)[1]}) holds exactly the {len(changed)} changed sessions")
    schemas = [pq.read_schema(p, filesystem=s3) for p in parts]
    assert all("customData_region" not in s.names for s in schemas[:-1])
    assert str(schemas[-1].field("customData_region").type) == "string", schemas[-1]
    print(f"schema: customData_region is a string column in the last part only "
          f"(manifest: {manifest['parts'][-1]['schema'].get('customData_region')})")

    con = duckdb_on_s3(endpoint)
    urls = s3_urls(parts)
    rows, distinct, regions, ty = con.execute(
        "select count(*), count(distinct _id), count(customData_region), "
        "any_value(typeof(customData_region)) "
        f"from read_parquet([{urls}], union_by_name = true)").fetchall()[0]
    assert (rows, distinct, regions) == (sessions + len(changed), sessions, with_region), \
        (rows, distinct, regions)
    print(f"duckdb {duckdb.__version__} (httpfs), union_by_name over the parts: {rows} rows, "
          f"{distinct} distinct, customData_region in {regions} ({ty})")
    snap = s3_urls(snapshot)
    rows, distinct, regions = con.execute(
        "select count(*), count(distinct _id), count(customData_region) "
        f"from read_parquet([{snap}], union_by_name = true)").fetchall()[0]
    assert (rows, distinct, regions) == (sessions, sessions, with_region), (rows, distinct, regions)
    stale = con.execute(
        f"with latest as (select _id, max(updatedAt) as at from read_parquet([{urls}], "
        f"union_by_name = true) group by _id) select count(*) from latest join "
        f"read_parquet([{snap}], union_by_name = true) s using (_id) where s.updatedAt <> latest.at"
    ).fetchall()[0][0]
    assert stale == 0, stale
    print(f"duckdb snapshot: {rows} rows, {distinct} distinct, each at its latest updatedAt; "
          f"customData_region in {regions}")
    snap_table = ds.dataset(snapshot, filesystem=s3, format="parquet").to_table(columns=["_id"])
    assert snap_table.num_rows == sessions
    print(f"pyarrow snapshot: {snap_table.num_rows} rows")


def manifest_rows(endpoint, bucket, prefix):
    manifest = read_manifest(s3_filesystem(endpoint), f"{bucket}/{prefix}")
    pending = manifest["pending"]["parts"]
    print(manifest["rows"], "rows in", len(manifest["parts"]), "parts;",
          sum(p["rows"] for p in pending), "rows in", len(pending),
          "parts of the export being built")


if __name__ == "__main__":
    if sys.argv[1] == "change":
        change(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "manifest":
        manifest_rows(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6],
              int(sys.argv[7]))
