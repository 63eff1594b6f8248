#!/usr/bin/env python3
"""Helpers for benches/compare/run: input generation, emulator polling, measurement.

    harness.py sessions-csv N PATH [--start I]     sessions CSV (userId,email,name,plan,company)
    harness.py contacts-csv N PATH                 the CSV of benches/common/mod.rs write_contacts_csv
    harness.py free-port
    harness.py wait URL                            until the emulator answers /__emulator/stats
    harness.py stats URL                           print /__emulator/stats
    harness.py measure OUT.json -- CMD...          wall time, peak RSS and CPU time of CMD
    harness.py watch-quota URL OUT.json --pid PID [--window 60] [--quota 6000]
                                                   poll the stats while PID runs: requests carried
                                                   out in the first WINDOW s after the first one
    harness.py kill-at URL PID SESSIONS OUT.json   SIGKILL PID once the emulator holds SESSIONS
    harness.py audit URL CSV OUT.json              lost and duplicated userIds, from the dump
    harness.py cpu PID                             user+system CPU seconds of a running process

Only the standard library: it runs before the venv exists.
"""

import csv
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request

MASK = (1 << 64) - 1


def sessions_csv(n, path, start=0):
    plans = ["free", "pro", "team", "enterprise"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write("userId,email,name,plan,company\n")
        for i in range(start, start + n):
            f.write(
                f"cust-{i:07d},user{i}@example.com,User {i},{plans[i % 4]},Company {i % 97}\n"
            )


def contacts_csv(rows, path):
    """Byte for byte what benches/common/mod.rs write_contacts_csv writes."""
    plans = ["free", "pro", "team", "enterprise"]
    countries = ["DE", "US", "FR", "JP", "BR", "IN", "SE", "ES"]
    x = 0x9E3779B97F4A7C15
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as out:
        out.write("id,email,name,plan,seats,signup,country,active,score,tags\n")
        lines = []
        for i in range(rows):
            x ^= (x << 13) & MASK
            x ^= x >> 7
            x ^= (x << 17) & MASK
            email = "" if x % 50 == 0 else f"user{i}@example.com"
            active = "true" if ((x >> 44) & 0xFFFFFFFF) % 2 == 0 else "false"
            lines.append(
                f'{i},{email},"User {i}, Jr.",{plans[x % 4]},{1 + x % 200},'
                f"2024-{1 + (x >> 8) % 12:02d}-{1 + (x >> 16) % 28:02d} "
                f"{(x >> 24) % 24:02d}:{(x >> 32) % 60:02d}:00,"
                f"{countries[(x >> 40) % 8]},{active},{(x >> 45) % 100}.{(x >> 52) % 100},"
                f'"tag{x % 7},tag{x % 5}"\n'
            )
            if len(lines) >= 10000:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def stats(base):
    return get_json(base.rstrip("/") + "/__emulator/stats")


def wait(base, secs=30):
    deadline = time.monotonic() + secs
    while True:
        try:
            return stats(base)
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"the emulator at {base} did not answer within {secs} s")
            time.sleep(0.05)


def measure(out, cmd):
    started = time.monotonic()
    code = subprocess.call(cmd)
    wall = time.monotonic() - started
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "exit_code": code,
        "wall_secs": wall,
        "peak_rss_bytes": ru.ru_maxrss * 1024,  # KiB on Linux
        "cpu_user_secs": ru.ru_utime,
        "cpu_sys_secs": ru.ru_stime,
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    return code


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by the shell) is not running.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def watch_quota(base, out, pid, window=60.0, quota=6000, stop_after_window=None):
    """Polls the stats every 50 ms while PID runs. The first sample with a request starts the
    window; the requests carried out (total minus 429s) and the sessions that exist at the
    last sample inside the window count. With stop_after_window, PID is killed that many
    seconds after the window."""
    samples = []
    t0 = None
    while True:
        now = time.monotonic()
        s = stats(base)
        sample = (now, s["total_requests"], s["rate_limited"], s["entities"]["sessions"])
        samples.append(sample)
        if t0 is None and sample[1] > 0:
            t0 = now
        if not alive(pid):
            break
        if stop_after_window is not None and t0 is not None and now - t0 > window + stop_after_window:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    in_window = [x for x in samples if t0 is not None and x[0] - t0 <= window]
    last = in_window[-1] if in_window else (0, 0, 0, 0)
    end = samples[-1]
    # Only what happened within the window counts, also for the 429 share.
    total, limited = last[1], last[2]
    span = end[0] - t0 if t0 else 0.0
    result = {
        "quota": quota,
        "window_secs": window,
        "observed_secs": span,
        "carried_out_in_window": total - limited,
        "quota_used": (total - limited) / quota,
        "requests_in_window": total,
        "rate_limited_in_window": limited,
        "share_429_in_window": limited / total if total else 0.0,
        "sessions_in_window": last[3],
        "requests_per_session_in_window": total / last[3] if last[3] else None,
        "total_requests": end[1],
        "rate_limited": end[2],
        "share_429": end[2] / end[1] if end[1] else 0.0,
        "sessions": end[3],
        "window_complete": span >= window,
        "stopped_after_window": stop_after_window is not None and span >= window,
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)


def kill_at(base, pid, sessions, out):
    killed_at = None
    while alive(pid):
        n = stats(base)["entities"]["sessions"]
        if n >= sessions:
            os.kill(pid, signal.SIGKILL)
            killed_at = n
            break
        time.sleep(0.002)
    with open(out, "w") as f:
        json.dump({"target": sessions, "sessions_at_kill": killed_at}, f)
    if killed_at is None:
        print("the process ended before the kill point", file=sys.stderr)


def audit(base, csv_path, out):
    dump = get_json(base.rstrip("/") + "/__emulator/dump", timeout=120)
    counts = {}
    for s in dump["sessions"]:
        u = s.get("userId")
        counts[u] = counts.get(u, 0) + 1
    with open(csv_path, newline="", encoding="utf-8") as f:
        wanted = [row["userId"] for row in csv.DictReader(f)]
    lost = [u for u in wanted if counts.get(u, 0) == 0]
    dup = [u for u in wanted if counts.get(u, 0) > 1]
    result = {
        "records": len(wanted),
        "sessions": len(dump["sessions"]),
        "lost": len(lost),
        "duplicated_user_ids": len(dup),
        "extra_sessions": sum(counts[u] - 1 for u in dup),
        "lost_examples": lost[:5],
        "duplicated_examples": dup[:5],
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "sessions-csv":
        start = int(args[args.index("--start") + 1]) if "--start" in args else 0
        sessions_csv(int(args[0]), args[1], start)
    elif cmd == "contacts-csv":
        contacts_csv(int(args[0]), args[1])
    elif cmd == "free-port":
        print(free_port())
    elif cmd == "wait":
        wait(args[0])
    elif cmd == "stats":
        print(json.dumps(stats(args[0])))
    elif cmd == "measure":
        sep = args.index("--")
        return measure(args[0], args[sep + 1 :])
    elif cmd == "watch-quota":
        opts = dict(zip(args[2::2], args[3::2]))
        watch_quota(
            args[0],
            args[1],
            int(opts["--pid"]),
            float(opts.get("--window", 60)),
            int(opts.get("--quota", 6000)),
            float(opts["--stop-after-window"]) if "--stop-after-window" in opts else None,
        )
    elif cmd == "kill-at":
        kill_at(args[0], int(args[1]), int(args[2]), args[3])
    elif cmd == "audit":
        audit(args[0], args[1], args[2])
    elif cmd == "cpu":
        print(f"{cpu(int(args[0])):.2f}")
    else:
        sys.exit(f"unknown command {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
