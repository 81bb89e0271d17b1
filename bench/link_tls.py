#!/usr/bin/env python3
"""Scenario t of bench/run.sh (issue 16): the mesh's links over TLS 1.3
against clear links (`link_tls = off`).

usage: link_tls.py RESULTS.jsonl RUN_ID
           prints scenario t's tables of that run: each configuration's
           fixed-rate and saturation figures, then the medians over the
           rounds and TLS ÷ clear (medians, and per round)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mesh_redis import fmt as _fmt, median, ratio  # noqa: E402


def fmt(v, digits=2):
    """mesh_redis's, but a float keeps its decimals when it is whole (18.0)."""
    if isinstance(v, float) and digits > 0:
        return f"{v:,.{digits}f}"
    return _fmt(v, digits)

BUSES = ("tls", "clear")


def ok(r):
    return r is not None and "error" not in r and "na" not in r


def per_msg_bytes(x):
    info, sat = x.get("info", {}), x.get("sat")
    b = info.get("sat_link_bytes")
    if not ok(sat) or not isinstance(b, (int, float)) or not sat.get("published"):
        return None
    return b / sat["published"]


def node1_share(x):
    cpus = x.get("info", {}).get("sat_node_cpu_s") or []
    tot = sum(c for c in cpus if isinstance(c, (int, float)))
    return cpus[0] * 100 / tot if cpus and tot else None


def table(path, run):
    recs = []
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            if r["run"] == run and r["scenario"].startswith("t") and r["scenario"][1:2].isdigit():
                recs.append(r)
    if not recs:
        return
    runs = {}  # (n, bus) -> list of {rate, sat, info}, rounds in order
    order = []  # (n, bus, index) in the order run
    for r in recs:
        n, kind = r["scenario"][1:].split("-", 1)
        n, bus = int(n), r["server"]
        lst = runs.setdefault((n, bus), [])
        if not lst or kind in lst[-1]:
            lst.append({})
            order.append((n, bus, len(lst)))
        lst[-1][kind] = r
    ns = sorted({n for n, _ in runs})
    out = ["", "(t) TLS links against clear links (link_tls = off): publishes on node1, listeners on "
               "every other node (each delivery crossed a link); fixed rate, latency from the due time", "",
           "| N | links | round | listeners | published | lost / dup / ooo | p50 (ms) | p99 (ms) | max (ms) "
           "| first delivery p50 (ms, from send) | deliveries/s | server CPU µs/message | µs/delivery "
           "| presence full (s) | `link_tls = off` warnings |",
           "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n, bus, k in order:
        x = runs[(n, bus)][k - 1]
        r, info = x.get("rate"), x.get("info", {})
        if r is None:
            continue
        if not ok(r):
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
            f"| {fmt(r.get('first_delivery_p50_ms'))} | {fmt(r.get('deliveries_per_s'), 0)} "
            f"| {fmt(r.get('server_cpu_us_per_message'), 1)} | {fmt(r.get('server_cpu_us_per_delivery'))} "
            f"| {pres} | {fmt(info.get('link_tls_off_warnings'))} |")
    out += ["", "(t) saturation: as fast as node1 answers, latency from the send time; link bytes "
                "and node CPU over the saturation run", "",
            "| N | links | round | listeners | published / offered (not sent) | publishes/s ack'd | lost "
            "| p50 (ms) | p99 (ms) | server CPU µs/message | link bytes/message | node1's share of CPU "
            "| server CPU % | loadgen CPU % |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n, bus, k in order:
        x = runs[(n, bus)][k - 1]
        r = x.get("sat")
        if r is None or "na" in r:
            continue
        if "error" in r:
            out.append(f"| {n} | {bus} | {k} | **failed**: {r['error']} | | | | | | | | | | |")
            continue
        share = node1_share(x)
        out.append(
            f"| {n} | {bus} | {k} | {fmt(r['listeners_connected'])} "
            f"| {fmt(r['published'])} / {fmt(r['offered'])} ({fmt(r['unsent'])}) "
            f"| {fmt(r.get('publish_rate_achieved'), 0)} | {fmt(r['lost'])} "
            f"| {fmt(r.get('latency_send_p50_ms'))} | {fmt(r.get('latency_send_p99_ms'))} "
            f"| {fmt(r.get('server_cpu_us_per_message'), 1)} | {fmt(per_msg_bytes(x), 1)} "
            f"| {'-' if share is None else f'{share:.0f} %'} "
            f"| {fmt(r.get('server_busy_pct'), 0)} | {fmt(r.get('loadgen_busy_pct'), 0)} |")

    def vals(n, bus, kind, key):
        return [x[kind].get(key) if ok(x.get(kind)) else None for x in runs.get((n, bus), [])]

    def lost(n, bus):
        return sum((x[kind].get("lost") or 0) for x in runs.get((n, bus), [])
                   for kind in ("rate", "sat") if ok(x.get(kind)))

    cols = (("p50 (ms)", "rate", "latency_p50_ms", 2), ("p99 (ms)", "rate", "latency_p99_ms", 2),
            ("first delivery p50 (ms)", "rate", "first_delivery_p50_ms", 2),
            ("CPU µs/message (fixed)", "rate", "server_cpu_us_per_message", 1),
            ("publishes/s ack'd (sat.)", "sat", "publish_rate_achieved", 0),
            ("CPU µs/message (sat.)", "sat", "server_cpu_us_per_message", 1),
            ("p99 from send (sat.)", "sat", "latency_send_p99_ms", 2))
    out += ["", "(t) medians over the rounds (range), and TLS ÷ clear", "",
            "| N | links | " + " | ".join(c[0] for c in cols) + " | link bytes/message (sat.) | lost (all runs) |",
            "| ---: | --- |" + " ---: |" * (len(cols) + 2)]
    for n in ns:
        meds = {}
        for bus in BUSES:
            cells = []
            for _, kind, key, d in cols:
                v = [y for y in vals(n, bus, kind, key) if isinstance(y, (int, float))]
                m = median(v)
                meds[(bus, kind, key)] = m
                cells.append(f"{fmt(m, d)} ({fmt(min(v), d)}–{fmt(max(v), d)})" if len(v) > 1 else fmt(m, d))
            b = median([per_msg_bytes(x) for x in runs.get((n, bus), [])])
            meds[(bus, "bytes")] = b
            out.append(f"| {n} | {bus} | " + " | ".join(cells) + f" | {fmt(b, 1)} | {fmt(lost(n, bus))} |")
        out.append(f"| {n} | **TLS ÷ clear** | " + " | ".join(
            ratio(meds[("tls", kind, key)], meds[("clear", kind, key)]) for _, kind, key, _ in cols)
            + f" | {ratio(meds[('tls', 'bytes')], meds[('clear', 'bytes')])} | |")
    # Per round: round k's TLS against round k's clear (adjacent in time).
    out += ["", "(t) TLS ÷ clear per round", "",
            "| N | round | " + " | ".join(c[0] for c in cols) + " |",
            "| ---: | ---: |" + " ---: |" * len(cols)]
    for n in ns:
        t, c = runs.get((n, "tls"), []), runs.get((n, "clear"), [])
        for k in range(min(len(t), len(c))):
            cells = []
            for _, kind, key, _ in cols:
                a = t[k][kind].get(key) if ok(t[k].get(kind)) else None
                b = c[k][kind].get(key) if ok(c[k].get(kind)) else None
                cells.append(ratio(a, b))
            out.append(f"| {n} | {k + 1} | " + " | ".join(cells) + " |")
    notes = []
    for (n, bus), lst in sorted(runs.items()):
        for k, x in enumerate(lst, 1):
            info = x.get("info", {})
            bad = {key: v for key, v in info.items()
                   if key in ("publishes_unsent_total", "peer_reconnects_total", "peer_protocol_errors_total",
                              "slow_listeners_evicted_total", "room_messages_dropped_total") and v}
            if bad:
                notes.append(f"- N={n} {bus} round {k}: {bad}")
            w = info.get("link_tls_off_warnings")
            if w is not None and (w != 0) != (bus == "clear"):
                notes.append(f"- N={n} {bus} round {k}: {w} node(s) logged the `link_tls = off` warning: "
                             f"**the links were not what the label says**")
    if notes:
        out += ["", "(t) counters", ""] + notes
    print("\n".join(out))


def main():
    a = sys.argv[1:]
    if len(a) == 2:
        table(a[0], a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
