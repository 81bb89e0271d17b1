#!/usr/bin/env python3
"""Scenario m of bench/run.sh (issue 14): the mesh against the Redis bus.

usage: mesh_redis.py watch EXPECTED TIMEOUT_S STOPFILE URL...
           polls each node's /cluster every 100 ms until every node reports
           EXPECTED listeners in the cluster (or TIMEOUT_S passes, or
           STOPFILE exists) and prints one JSON line: when each node first
           reported them, seconds after the watch started
       mesh_redis.py metrics URL...
           sums the bus and peer counters of each node's /metrics (JSON)
       mesh_redis.py table RESULTS.jsonl RUN_ID
           prints scenario m's tables of that run
"""
import json
import os
import statistics
import sys
import time
import urllib.request


def get(url, timeout=1.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def watch(expected, timeout, stopfile, urls):
    t0 = time.monotonic()
    first = [None] * len(urls)
    last = [None] * len(urls)
    while time.monotonic() - t0 < timeout and not os.path.exists(stopfile):
        for i, u in enumerate(urls):
            if first[i] is not None:
                continue
            try:
                c = json.loads(get(u + "/cluster"))
            except Exception:
                continue
            last[i] = c.get("listeners")
            if last[i] == expected and len(c.get("nodes", [])) == len(urls):
                first[i] = round(time.monotonic() - t0, 3)
        if all(f is not None for f in first):
            break
        time.sleep(0.1)
    print(json.dumps({
        "presence_expected": expected,
        "presence_converged": all(f is not None for f in first),
        "presence_full_s": max(first) if all(f is not None for f in first) else None,
        "presence_first_s": first,
        "presence_last_seen": last,
    }))


SUMS = ("watercooler_bus_data_lost_total", "watercooler_bus_reconnects_total",
        "watercooler_publishes_unsent_total", "watercooler_peer_reconnects_total",
        "watercooler_peer_protocol_errors_total", "watercooler_slow_listeners_evicted_total",
        "watercooler_room_messages_dropped_total")
MAXES = ("watercooler_bus_behind_seconds", "watercooler_bus_outbox")


def metrics(urls):
    out = {k: None for k in SUMS + MAXES}
    for u in urls:
        try:
            text = get(u + "/metrics", 3.0)
        except Exception:
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) != 2 or line.startswith("#"):
                continue
            name = parts[0].split("{")[0]  # labels (bus="redis", room=…) summed
            if name not in out:
                continue
            v = float(parts[1])
            if name in SUMS:
                out[name] = (out[name] or 0) + v
            else:
                out[name] = max(out[name] or 0, v)
    print(json.dumps({k.replace("watercooler_", ""): v for k, v in out.items()}))


def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.{digits}f}"
    return f"{int(v):,}"


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}×"
    return "-"


def median(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def table(path, run):
    recs = []
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            if r["run"] == run and r["scenario"].startswith("m") and r["scenario"][1:2].isdigit():
                recs.append(r)
    if not recs:
        return
    # m{N}-{rate,sat,info}, server mesh|redis; rounds by order of appearance.
    runs = {}  # (n, bus) -> list of {rate, sat, info}
    for r in recs:
        n, kind = r["scenario"][1:].split("-", 1)
        n, bus = int(n), r["server"]
        lst = runs.setdefault((n, bus), [])
        if not lst or kind in lst[-1]:
            lst.append({})
        lst[-1][kind] = r
    ns = sorted({n for n, _ in runs})
    out = ["", "(m) mesh against Redis: publishes on node1, listeners on every other node "
               "(each delivery crosses the bus); fixed rate, latency from the due time", "",
           "| N | bus | round | listeners | published | lost / dup / ooo | p50 (ms) | p99 (ms) | max (ms) "
           "| first delivery p50 / p99 (ms, from send) | deliveries/s | server+bus CPU µs/delivery "
           "| server CPU % | presence full (s) | nodes linked (ms) |",
           "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in ns:
        for bus in ("mesh", "redis"):
            for k, x in enumerate(runs.get((n, bus), []), 1):
                r, info = x.get("rate"), x.get("info", {})
                if r is None:
                    continue
                if "error" in r or "na" in r:
                    out.append(f"| {n} | {bus} | {k} | **{'n/a' if 'na' in r else 'failed'}**: "
                               f"{r.get('error') or r.get('na')} | | | | | | | | | | | |")
                    continue
                pres = fmt(info.get("presence_full_s")) if info.get("presence_converged") else \
                    f"**no** (saw {info.get('presence_last_seen')} of {info.get('presence_expected')})"
                out.append(
                    f"| {n} | {bus} | {k} | {fmt(r['listeners_connected'])}/{fmt(r['listeners_requested'])} "
                    f"| {fmt(r['published'])}/{fmt(r['offered'])} "
                    f"| {fmt(r['lost'])} / {fmt(r['duplicated'])} / {fmt(r['out_of_order'])} "
                    f"| {fmt(r.get('latency_p50_ms'))} | {fmt(r.get('latency_p99_ms'))} | {fmt(r.get('latency_max_ms'))} "
                    f"| {fmt(r.get('first_delivery_p50_ms'))} / {fmt(r.get('first_delivery_p99_ms'))} "
                    f"| {fmt(r.get('deliveries_per_s'), 0)} | {fmt(r.get('server_cpu_us_per_delivery'))} "
                    f"| {fmt(r.get('server_busy_pct'), 0)} | {pres} | {fmt(info.get('linked_after_listening_ms'))} |")
    if any("sat" in x for v in runs.values() for x in v):
        out += ["", "(m) saturation: as fast as node1 answers, latency from the send time", "",
                "| N | bus | round | listeners | published / offered (not sent) | publishes/s ack'd | lost "
                "| p50 (ms) | p99 (ms) | deliveries/s | server+bus CPU µs/message | server CPU % | loadgen CPU % |",
                "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for n in ns:
            for bus in ("mesh", "redis"):
                for k, x in enumerate(runs.get((n, bus), []), 1):
                    r = x.get("sat")
                    if r is None or "na" in r:
                        continue
                    if "error" in r:
                        out.append(f"| {n} | {bus} | {k} | **failed**: {r['error']} | | | | | | | | | |")
                        continue
                    out.append(
                        f"| {n} | {bus} | {k} | {fmt(r['listeners_connected'])} "
                        f"| {fmt(r['published'])} / {fmt(r['offered'])} ({fmt(r['unsent'])}) "
                        f"| {fmt(r.get('publish_rate_achieved'), 0)} | {fmt(r['lost'])} "
                        f"| {fmt(r.get('latency_send_p50_ms'))} | {fmt(r.get('latency_send_p99_ms'))} "
                        f"| {fmt(r.get('deliveries_per_s'), 0)} | {fmt(r.get('server_cpu_us_per_message'), 1)} "
                        f"| {fmt(r.get('server_busy_pct'), 0)} | {fmt(r.get('loadgen_busy_pct'), 0)} |")
    out += ["", "(m) Redis ÷ mesh, medians over the rounds", "",
            "| N | p50 | p99 | deliveries/s (fixed) | CPU/delivery (fixed) | publishes/s ack'd (sat.) "
            "| deliveries/s (sat.) | p99 from send (sat.) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def med(n, bus, kind, key):
        return median([x[kind].get(key) for x in runs.get((n, bus), [])
                       if kind in x and "error" not in x[kind] and "na" not in x[kind]])

    for n in ns:
        cells = [ratio(med(n, "redis", kind, key), med(n, "mesh", kind, key)) for kind, key in (
            ("rate", "latency_p50_ms"), ("rate", "latency_p99_ms"), ("rate", "deliveries_per_s"),
            ("rate", "server_cpu_us_per_delivery"), ("sat", "publish_rate_achieved"),
            ("sat", "deliveries_per_s"), ("sat", "latency_send_p99_ms"))]
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    notes = []
    for (n, bus), lst in sorted(runs.items()):
        for k, x in enumerate(lst, 1):
            info = x.get("info", {})
            bad = {key: v for key, v in info.items()
                   if key in ("bus_data_lost_total", "bus_reconnects_total", "publishes_unsent_total",
                              "peer_reconnects_total", "peer_protocol_errors_total",
                              "slow_listeners_evicted_total", "room_messages_dropped_total") and v}
            if bad:
                notes.append(f"- N={n} {bus} round {k}: {bad}")
            if info.get("redis_calls"):
                c = info["redis_calls"]
                pub = sum((x.get(kind) or {}).get("published") or 0 for kind in ("rate", "sat"))
                notes.append(f"- N={n} redis round {k}: Redis calls {c} for {pub:,} messages "
                             f"({info.get('redis_total_commands', 0) / max(pub, 1):.1f} commands per message); "
                             f"Redis CPU {fmt(info.get('redis_cpu_s'))} s")
    if notes:
        out += ["", "(m) bus counters and Redis commands", ""] + notes
    print("\n".join(out))


def main():
    a = sys.argv[1:]
    if len(a) >= 5 and a[0] == "watch":
        watch(int(a[1]), float(a[2]), a[3], a[4:])
    elif len(a) >= 2 and a[0] == "metrics":
        metrics(a[1:])
    elif len(a) == 3 and a[0] == "table":
        table(a[1], a[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
