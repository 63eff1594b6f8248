#!/usr/bin/env python3
"""The import a user would write by hand instead of using gleap-etl: CSV rows -> Gleap sessions.

A straightforward, careful asyncio + aiohttp script, as a competent engineer would write it in
an afternoon:

- a fixed pool of CONCURRENCY workers sharing one keep-alive connection pool;
- the same upsert as gleap-etl without prefetch: for each row GET /sessions/by-user-id/{userId};
  404 -> POST /sessions; found -> PUT /sessions/{id} when a field differs, else nothing;
- the same mapping as benches/compare/import.yaml (plan -> customData.plan,
  company -> companyName; empty cells are not sent);
- 5xx, timeouts and dropped connections are retried with jittered exponential backoff
  (8 attempts); a 429 waits for its Retry-After (1 s without one) and is retried.

It keeps no state between runs: a create whose answer was lost is sent again, and a re-run
looks every row up again. That is the point of the comparison.

    import_script.py --base-url http://127.0.0.1:8080/v3 --api-key K --project P \
        --csv sessions.csv --concurrency 16 [--report r.json] [--stop-after SECS]

The report (JSON) has records, created/updated/unchanged/failed, requests (every request sent,
429s and retries included), rate_limited, retries, elapsed_secs and records_per_sec.
"""

import argparse
import asyncio
import csv
import json
import random
import sys
import time
from urllib.parse import quote

import aiohttp

MAX_ATTEMPTS = 8


class Stats:
    def __init__(self):
        self.records = 0
        self.created = 0
        self.updated = 0
        self.unchanged = 0
        self.failed = 0
        self.requests = 0
        self.rate_limited = 0
        self.retries = 0


def row_to_session(row):
    """The same mapping as the gleap-etl pipeline: rename plan and company, drop empty cells."""
    body = {}
    custom = {}
    for key, value in row.items():
        if value is None or value == "":
            continue
        if key == "plan":
            custom["plan"] = value
        elif key == "company":
            body["companyName"] = value
        else:
            body[key] = value
    if custom:
        body["customData"] = custom
    return body


def differs(existing, body):
    for key, value in body.items():
        if key == "customData":
            have = existing.get("customData") or {}
            if any(have.get(k) != v for k, v in value.items()):
                return True
        elif existing.get(key) != value:
            return True
    return False


class Client:
    def __init__(self, session, base_url, stats):
        self.session = session
        self.base = base_url.rstrip("/")
        self.stats = stats

    async def request(self, method, path, body=None):
        """Returns (status, json or None); retries 5xx, connection errors and 429s."""
        attempt = 0
        while True:
            self.stats.requests += 1
            try:
                async with self.session.request(method, self.base + path, json=body) as resp:
                    if resp.status == 429:
                        self.stats.rate_limited += 1
                        try:
                            wait = float(resp.headers.get("Retry-After", "1"))
                        except ValueError:
                            wait = 1.0
                        await resp.read()
                        await asyncio.sleep(wait)
                        continue
                    if resp.status >= 500:
                        await resp.read()
                        raise RuntimeError(f"HTTP {resp.status}")
                    data = None
                    if resp.status != 204:
                        data = await resp.json(content_type=None)
                    return resp.status, data
            except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError, ValueError) as e:
                attempt += 1
                if attempt >= MAX_ATTEMPTS:
                    raise RuntimeError(f"{method} {path}: giving up after {attempt} attempts: {e}")
                self.stats.retries += 1
                await asyncio.sleep(min(5.0, 0.05 * 2**attempt) * (0.5 + random.random()))

    async def upsert(self, body):
        user_id = body["userId"]
        status, found = await self.request(
            "GET", "/sessions/by-user-id/" + quote(user_id, safe="")
        )
        if status == 404:
            status, _ = await self.request("POST", "/sessions", body)
            if status >= 400:
                raise RuntimeError(f"POST /sessions answered {status}")
            self.stats.created += 1
        elif status == 200:
            if differs(found, body):
                status, _ = await self.request("PUT", f"/sessions/{found['_id']}", body)
                if status >= 400:
                    raise RuntimeError(f"PUT answered {status}")
                self.stats.updated += 1
            else:
                self.stats.unchanged += 1
        else:
            raise RuntimeError(f"GET by-user-id answered {status}")


async def main_async(args):
    stats = Stats()
    queue = asyncio.Queue(maxsize=args.concurrency * 4)
    headers = {
        "Authorization": f"Bearer {args.api_key}",
        "project": args.project,
        "Content-Type": "application/json",
    }
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    deadline = time.monotonic() + args.stop_after if args.stop_after else None
    started = time.monotonic()
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as s:
        client = Client(s, args.base_url, stats)

        async def worker():
            while True:
                body = await queue.get()
                if body is None:
                    return
                try:
                    await client.upsert(body)
                except Exception as e:  # a careful script logs and goes on
                    stats.failed += 1
                    print(f"failed {body.get('userId')}: {e}", file=sys.stderr)
                stats.records += 1

        workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
        with open(args.csv, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if deadline and time.monotonic() >= deadline:
                    break
                await queue.put(row_to_session(row))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    elapsed = time.monotonic() - started
    report = dict(vars(stats))
    report["elapsed_secs"] = elapsed
    report["records_per_sec"] = stats.records / elapsed if elapsed else 0.0
    report["requests_per_record"] = stats.requests / stats.records if stats.records else 0.0
    report["concurrency"] = args.concurrency
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--report")
    p.add_argument("--stop-after", type=float, help="stop taking new rows after SECS")
    args = p.parse_args()
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text)
    else:
        print(text)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
