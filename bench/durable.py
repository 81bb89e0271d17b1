#!/usr/bin/env python3
"""Helpers for bench/run.sh scenario l (durable history, issue 15).

usage:
  durable.py probe DIR SECONDS
      write 100 bytes + fdatasync in a loop on a new file in DIR (appending,
      as the log does) for SECONDS; prints one JSON object: syncs per
      second, p50/p99 of one write+fdatasync (ms) and its CPU (µs). The
      file is removed. This is what the disk allows one thread, the ceiling
      for `--fsync always` (one fdatasync per publish).
  durable.py start REPS -- COMMAND...
      starts COMMAND REPS times (each time with `--port P` appended, P a
      free port), and measures from just before the start until
      `GET /healthz` answers 200 (polled every ms, a new connection each
      try); then reads the process's VmRSS and VmHWM, scrapes /metrics
      (records loaded, messages held), stops it with SIGTERM and waits.
      COMMAND must log at info level to stderr: its "loaded N records"
      line is kept. Prints one JSON object.
  durable.py table RESULTS.jsonl RUN_ID
      prints the markdown tables of scenario l of that run.
"""
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time


def probe(dirname, seconds):
    fd, path = tempfile.mkstemp(prefix="fsync-probe.", dir=dirname)
    try:
        lat = []
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        off = 0
        block = b"x" * 100
        while time.monotonic() - t0 < seconds:
            a = time.perf_counter()
            os.pwrite(fd, block, off)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - a)
            off += len(block)
        wall = time.monotonic() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    n = len(lat)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({
        "syncs": n,
        "syncs_per_s": round(n / wall, 1),
        "sync_p50_ms": round(lat[n // 2] * 1e3, 3),
        "sync_p99_ms": round(lat[min(n - 1, int(n * 0.99))] * 1e3, 3),
        "sync_max_ms": round(lat[-1] * 1e3, 3),
        "sync_cpu_us": round(cpu * 1e6 / n, 1),
    }))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def proc_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def start_once(cmd, deadline_s=60.0):
    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd + ["--port", str(port)], stdout=subprocess.DEVNULL, stderr=err)
        try:
            while True:
                try:
                    status, _ = get(port, "/healthz")
                    if status == 200:
                        break
                except OSError:
                    pass
                if p.poll() is not None:
                    err.seek(0)
                    raise SystemExit(f"the node exited ({p.returncode}): {err.read()[-400:]}")
                if time.monotonic() - t0 > deadline_s:
                    raise SystemExit(f"no 200 from /healthz within {deadline_s} s")
                time.sleep(0.001)
            ms = (time.monotonic() - t0) * 1e3
            rss, hwm = proc_kib(p.pid, "VmRSS"), proc_kib(p.pid, "VmHWM")
            _, metrics = get(port, "/metrics")
        finally:
            p.terminate()  # our own child
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        err.seek(0)
        loaded = [l.strip() for l in err if " loaded " in l]
    return {
        "ms": round(ms, 1),
        "rss_kib": rss,
        "hwm_kib": hwm,
        "loaded_records": metric(metrics, "watercooler_log_loaded_records"),
        "history_messages": metric(metrics, "watercooler_history_messages"),
        "loaded_line": loaded[0] if loaded else None,
    }


def start(reps, cmd):
    runs = [start_once(cmd) for _ in range(reps)]
    ms = sorted(r["ms"] for r in runs)
    last = runs[-1]
    print(json.dumps({
        "start_ms": [r["ms"] for r in runs],
        "start_ms_median": ms[len(ms) // 2],
        "rss_kib": [r["rss_kib"] for r in runs],
        "hwm_kib": [r["hwm_kib"] for r in runs],
        "loaded_records": last["loaded_records"],
        "history_messages": last["history_messages"],
        "loaded_line": last["loaded_line"],
    }))


def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.{digits}f}"
    return f"{int(v):,}"


MODES = ("always", "batch", "off", "memory")


def table(path, run):
    recs = {}
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            if r["run"] == run:
                recs[(r["scenario"], r["server"])] = r
    if not any(s.startswith("l") and s[1:2] in ("s", "r", "d", "f") for s, _ in recs):
        return
    out = []
    disk = recs.get(("ldisk", "probe"), {})
    if disk:
        out.append(f"(l) durable history, data on {disk.get('fstype', '?')} ({disk.get('source', '?')}, "
                   f"{disk.get('dir', '?')}); one thread's write+fdatasync: {fmt(disk.get('syncs_per_s'), 0)}/s, "
                   f"p50 {fmt(disk.get('sync_p50_ms'), 3)} ms, p99 {fmt(disk.get('sync_p99_ms'), 3)} ms, "
                   f"{fmt(disk.get('sync_cpu_us'), 0)} µs CPU each")
    for kind, title in (("lsat", "saturation (acknowledged publishes/s; latency from the send time)"),
                        ("lrate", "fixed rate (latency from the due time)")):
        rows = [(m, recs.get((f"{kind}-{m}", "watercooler")), recs.get((f"{kind}-{m}", "log")))
                for m in MODES]
        if not any(r for _, r, _ in rows):
            continue
        base = next((r for m, r, _ in rows if m == "memory" and r and "error" not in r), None)
        out += ["", f"(l) {title}", "",
                "| mode | published / offered | publishes/s ack'd | ÷ memory | publish→deliver p50 / p99 (ms) "
                "| p99 ÷ memory | answer p50 / p99 (ms) | lost | commits | publishes/commit | server CPU µs/msg "
                "| server CPU % | loadgen CPU % |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for m, r, log in rows:
            if r is None:
                continue
            if "error" in r:
                out.append(f"| {m} | **failed**: {r['error']} | | | | | | | | | | | |")
                continue
            rate = r.get("publish_rate_achieved")
            q = (f"{rate / base['publish_rate_achieved']:.2f}×"
                 if base and rate and base.get("publish_rate_achieved") else "")
            key = "latency_send_p" if kind == "lsat" else "latency_p"
            lat = f"{fmt(r.get(key + '50_ms'))} / {fmt(r.get(key + '99_ms'))}"
            p99, b99 = r.get(key + "99_ms"), (base or {}).get(key + "99_ms")
            q99 = f"{p99 / b99:.2f}×" if p99 is not None and b99 else ""
            commits = (log or {}).get("commits")
            per = (f"{r['published'] / commits:.1f}" if commits else "")
            out.append(f"| {m} | {fmt(r.get('published'))} / {fmt(r.get('offered'))} | {fmt(rate, 0)} | {q} | {lat} "
                       f"| {q99} | {fmt(r.get('ack_p50_ms'))} / {fmt(r.get('ack_p99_ms'))} | {fmt(r.get('lost'))} "
                       f"| {fmt(commits) if commits is not None else '-'} | {per} "
                       f"| {fmt(r.get('server_cpu_us_per_message'), 1)} | {fmt(r.get('server_busy_pct'), 0)} "
                       f"| {fmt(r.get('loadgen_busy_pct'), 0)} |")
        always = rows[0][1]
        if kind == "lsat" and always and "error" not in always and disk.get("syncs_per_s"):
            a = always.get("publish_rate_achieved") or 0
            out += ["", f"`always` acknowledged {a / disk['syncs_per_s']:.2f}× one thread's write+fdatasync rate "
                        f"({fmt(a, 0)} against {fmt(disk['syncs_per_s'], 0)}/s)."]
    fill = recs.get(("lfill", "watercooler"))
    starts = [(k, recs.get(("lstart", k))) for k in ("empty", "full", "full-all")]
    if fill or any(r for _, r in starts):
        out += [""]
        if fill and "error" not in fill:
            out.append(f"(l) start-up: the log filled with {fmt(fill.get('published'))} of {fmt(fill.get('offered'))} "
                       f"messages at {fmt(fill.get('publish_rate_achieved'), 0)}/s (--fsync off), "
                       f"{fmt(recs.get(('lfill', 'log'), {}).get('log_bytes'))} bytes on disk")
        out += ["", "| log | flags | start → /healthz 200, median (ms) | each (ms) | records loaded | messages held "
                "| RSS after (KiB) | peak RSS (KiB) |",
                "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"]
        for k, r in starts:
            if r is None:
                continue
            if "error" in r:
                out.append(f"| {k} | **failed**: {r['error']} | | | | | | |")
                continue
            out.append(f"| {k} | {r.get('flags', '')} | {fmt(r.get('start_ms_median'), 1)} "
                       f"| {', '.join(fmt(x, 1) for x in r.get('start_ms', []))} | {fmt(r.get('loaded_records'))} "
                       f"| {fmt(r.get('history_messages'))} | {fmt(max(r.get('rss_kib') or [0]))} "
                       f"| {fmt(max(r.get('hwm_kib') or [0]))} |")
    print("\n".join(out))


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "probe":
        probe(sys.argv[2], float(sys.argv[3]))
    elif len(sys.argv) >= 5 and sys.argv[1] == "start" and sys.argv[3] == "--":
        start(int(sys.argv[2]), sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
