#!/usr/bin/env python3
"""What a user would run instead of `gleap-etl export sessions`: dlt's rest_api source.

GET /v3/sessions paged with limit/skip (dlt's offset paginator, 1000 a page, stopping at the
first empty page) into the filesystem destination as Parquet, with dlt's defaults otherwise.
The pipeline's working directory is a fresh folder, so every run is a full export.

    dlt_export.py --base-url URL --api-key K --project P --out DIR --work DIR

Prints a JSON line: rows, elapsed_secs, files.
"""

import argparse
import glob
import json
import os
import time

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt  # noqa: E402
from dlt.sources.rest_api import rest_api_source  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--work", required=True)
    args = p.parse_args()

    started = time.monotonic()
    source = rest_api_source(
        {
            "client": {
                "base_url": args.base_url.rstrip("/") + "/",
                "auth": {"type": "bearer", "token": args.api_key},
                "headers": {"project": args.project},
                "paginator": {
                    "type": "offset",
                    "limit": 1000,
                    "offset_param": "skip",
                    "limit_param": "limit",
                    "total_path": None,
                    "stop_after_empty_page": True,
                },
            },
            "resources": [
                {
                    "name": "sessions",
                    "endpoint": {"path": "sessions", "data_selector": "$"},
                    "write_disposition": "replace",
                }
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="gleap_sessions",
        pipelines_dir=args.work,
        destination=dlt.destinations.filesystem(bucket_url=os.path.abspath(args.out)),
        dataset_name="gleap",
    )
    info = pipeline.run(source, loader_file_format="parquet")
    elapsed = time.monotonic() - started
    info.raise_on_failed_jobs()

    files = glob.glob(os.path.join(args.out, "gleap", "sessions", "*.parquet"))
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    print(
        json.dumps(
            {
                "rows": rows,
                "elapsed_secs": elapsed,
                "files": len(files),
                "bytes": sum(os.path.getsize(f) for f in files),
                "dlt": dlt.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
