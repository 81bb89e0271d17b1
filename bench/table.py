#!/usr/bin/env python3
"""Prints the table of one bench/run.sh run from its JSON lines.

usage: table.py RESULTS.jsonl [RUN_ID]   (default: the last run in the file)
"""
import json
import sys

MIB = 1024 * 1024


def load(path, run):
    recs = [json.loads(l) for l in open(path) if l.strip()]
    if not recs:
        sys.exit("no results")
    run = run or recs[-1]["run"]
    out = {}
    for r in recs:
        if r["run"] == run:
            out[(r["scenario"], r["server"])] = r
    return run, out


def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.{digits}f}"
    return f"{int(v):,}"


def ratio(w, n):
    if isinstance(w, (int, float)) and isinstance(n, (int, float)) and n:
        return f"{w / n:.2f}×"
    return ""


def all_connected(r):
    return r.get("listeners_connected") == r.get("listeners_requested")


def get(r, key):
    if r is None or "error" in r or "na" in r:
        return None
    if callable(key):
        return key(r)
    return r.get(key)


def cell(r, key, digits):
    """A value as printed; blank for a field this record predates."""
    if isinstance(key, str) and get(r, "mode") is not None and key not in r:
        return ""
    return fmt(get(r, key), digits)


# (label, key, digits, target text, check(wc_record, nchan_record) -> bool|None)
def rows_for(s):
    connected = ("listeners connected", lambda r: f"{r['listeners_connected']:,}/{r['listeners_requested']:,}"
                 + (f" ({r['connect_errors']} retried)" if r.get("connect_errors") else ""), 0,
                 "all", lambda w, n: all_connected(w))
    connect_t = ("connect time (s)", "connect_time_s", 2, "", None)
    lost = ("lost / dup / out-of-order", lambda r: f"{r['lost']:,} / {r['duplicated']:,} / {r['out_of_order']:,}", 0,
            "0 loss", lambda w, n: w["lost"] == 0 and w["duplicated"] == 0 and w["out_of_order"] == 0)
    lost_info = (lost[0], lost[1], 0, "", None)
    p50 = ("latency p50 (ms)", "latency_p50_ms", 2, "", None)
    p99_vs = ("latency p99 (ms)", "latency_p99_ms", 2, "≤ nchan",
              lambda w, n: n is not None and w["latency_p99_ms"] is not None and n.get("latency_p99_ms") is not None
              and w["latency_p99_ms"] <= n["latency_p99_ms"])
    p99 = ("latency p99 (ms)", "latency_p99_ms", 2, "", None)
    pmax = ("latency max (ms)", "latency_max_ms", 2, "", None)
    dps = ("deliveries/s", "deliveries_per_s", 0, "", None)
    # How late publishes left (send time − due time), and the latency as
    # loadgen measured it before it stamped due times (from the send time).
    late = [("publish late p50 (ms)", "publish_late_p50_ms", 2, "", None),
            ("publish late p99 (ms)", "publish_late_p99_ms", 2, "", None),
            ("publish late max (ms)", "publish_late_max_ms", 2, "", None)]
    late99 = late[1]
    p99_send = ("latency p99 from send time (ms)", "latency_send_p99_ms", 2, "", None)
    achieved = ("publish rate acknowledged (/s)", "publish_rate_achieved", 1, "", None)
    cpu = ("server CPU µs/delivery", "server_cpu_us_per_delivery", 2, "", None)
    rss = ("RSS per listener (B)", "rss_per_listener_bytes", 0, "", None)
    # Per message rather than per delivery: publish to the earliest listener,
    # and earliest to latest listener (the fan-out of one message).
    first50 = ("first delivery p50 (ms)", "first_delivery_p50_ms", 2, "", None)
    first99 = ("first delivery p99 (ms)", "first_delivery_p99_ms", 2, "", None)
    spread = [("fan-out spread p50 (ms)", "spread_p50_ms", 2, "", None),
              ("fan-out spread p99 (ms)", "spread_p99_ms", 2, "", None)]
    per_message = [first50, first99] + spread
    if s == "a":
        return [connected, lost_info, p50, p99_vs, pmax, p99_send, late99] + per_message + [dps, cpu]
    if s == "b":
        def full_rate(w, n):
            offered = w["listeners_connected"] * w["publish_rate_target"]
            ok = w["deliveries_per_s"] is not None and w["deliveries_per_s"] >= 0.95 * offered
            ok = ok and (w["publish_rate_achieved"] or 0) >= 0.95 * w["publish_rate_target"]
            if n is not None and n.get("deliveries_per_s"):
                ok = ok and w["deliveries_per_s"] >= 1.5 * n["deliveries_per_s"]
            return ok
        return [connected, achieved,
                ("deliveries/s", "deliveries_per_s", 0, "≥ 95 % offered, ≥ 1.5× nchan", full_rate),
                lost, p50, p99_vs, pmax, p99_send, late99] + per_message + [cpu]
    if s == "c":
        return [connected, connect_t,
                ("RSS per listener (B)", "rss_per_listener_bytes", 0, "≤ 2,048",
                 lambda w, n: w["rss_per_listener_bytes"] is not None and w["rss_per_listener_bytes"] <= 2048),
                ("server RSS idle (KiB)", "server_rss_idle_kib", 0, "", None),
                lost, p50, p99] + per_message
    if s == "d":
        return [connected, connect_t,
                ("RSS per listener (B, 3 nodes)", "rss_per_listener_bytes", 0, "", None),
                lost, p50, p99] + per_message + [dps]
    if s == "e":
        return [connected, connect_t, rss, lost_info, p50, p99, pmax, late99] + per_message
    if s in ("f", "f100"):
        # The 2 ms target, against all deliveries and against the first one
        # of each message (the publish path and cross-node hop without the
        # fan-out), so the table shows which of the two meets it.
        def within_2ms(key):
            return lambda w, n: None if key not in w else w[key] is not None and w[key] <= 2.0
        return [lost, p50,
                ("latency p99 (ms)", "latency_p99_ms", 2, "≤ 2 ms", within_2ms("latency_p99_ms")),
                pmax, late99, first50,
                ("first delivery p99 (ms)", "first_delivery_p99_ms", 2, "≤ 2 ms",
                 within_2ms("first_delivery_p99_ms"))] + spread
    if s == "g":
        # Overload (issue 11): every message offered is published and
        # delivered to every listener, at the offered rate.
        def all_published(w, n):
            return w.get("published") is not None and w["published"] == w.get("offered")

        def full_rate(w, n):
            return (w["publish_rate_achieved"] or 0) >= 0.95 * w["publish_rate_target"]
        return [connected,
                ("published / offered", lambda r: f"{r['published']:,} / {r['offered']:,}"
                 + (f" ({r['unsent']:,} not sent)" if r.get("unsent") else ""), 0, "all", all_published),
                ("publish rate acknowledged (/s)", "publish_rate_achieved", 1, "≥ 95 % offered", full_rate),
                ("deliveries/s offered", "deliveries_per_s_offered", 0, "", None),
                dps, lost] + late + [p50, p99, pmax, p99_send] + per_message + [
                ("publish answer p99 (ms)", "ack_p99_ms", 2, "", None), cpu,
                # CPU share of one core while publishing and draining: a
                # server under 100 % that falls behind was short of CPU.
                ("server CPU (% of a core)", "server_busy_pct", 0, "", None),
                ("loadgen CPU (% of a core)", "loadgen_busy_pct", 0, "", None)]
    if s in ROOMS:
        # Rooms (issue 13): watercooler only. Loss is owed per room; a
        # message at another room's listener is leaked.
        return [connected,
                ("rooms / published in", lambda r: f"{r.get('rooms', 1):,} / {r.get('publish_rooms', 1):,}", 0, "", None),
                ("published / offered", lambda r: f"{r['published']:,} / {r['offered']:,}", 0, "", None),
                ("publish rate acknowledged (/s)", "publish_rate_achieved", 1, "", None),
                ("lost / dup / ooo / leaked", lambda r: f"{r['lost']:,} / {r['duplicated']:,} / {r['out_of_order']:,}"
                 f" / {r.get('leaked', 0):,}", 0, "0",
                 lambda w, n: w["lost"] == 0 and w["duplicated"] == 0 and w["out_of_order"] == 0
                 and w.get("leaked", 0) == 0),
                ("rooms with loss / dup or ooo", lambda r: f"{r.get('rooms_with_loss', 0):,} / "
                 f"{r.get('rooms_with_dup_or_ooo', 0):,}", 0, "", None),
                ("deliveries", "delivered", 0, "", None),
                p50, p99, pmax, late99, dps, cpu,
                ("server CPU µs/message", "server_cpu_us_per_message", 2, "", None),
                ("server CPU (% of a core)", "server_busy_pct", 0, "", None)]
    return []


ROOMS = ("r1", "r1000", "r10", "r1000one", "r1000all")


def rooms_summary(recs):
    """The issue-13 targets, from the four rooms records of one run."""
    def val(s, k):
        r = recs.get((s, "watercooler"))
        return None if r is None or "error" in r or "na" in r else r.get(k)
    out = []
    for (a, b, key, what, target) in (
            ("r1000", "r1", "server_cpu_us_per_delivery", "CPU per delivery, 1,000 rooms × 10 / 1 room × 10,000",
             "≤ 1.10"),
            ("r1000", "r1", "latency_p99_ms", "p99 latency, 1,000 rooms × 10 / 1 room × 10,000", ""),
            ("r1000one", "r10", "server_cpu_us_per_message",
             "CPU per message, one busy room among 1,000 (10,000 listeners) / that room alone", "≤ 1.10"),
            ("r1000all", "r10", "server_cpu_us_per_delivery",
             "CPU per delivery, 10 per message: messages over 1,000 rooms / 1 room alone", "≤ 1.10"),
    ):
        x, y = val(a, key), val(b, key)
        if x is None or y is None or not y:
            continue
        q = x / y
        met = "" if not target else ("yes" if q <= 1.10 else "**no**")
        out.append(f"| rooms | {what} | {fmt(x)} / {fmt(y)} | | {q:.2f}× | {target} | {met} |")
    return out


TITLES = {
    "a": "(a) 1,000 listeners × 200 msgs @ 100/s",
    "b": "(b) 10,000 listeners × 100 msgs @ 20/s",
    "c": "(c) 19,000 idle listeners, then 20 msgs @ 2/s",
    "d": "(d) 3 nodes, 50,000 listeners, 20 msgs @ 2/s",
    "e": "(e) TLS: 5,000 listeners × 200 msgs @ 100/s",
    "f": "(f) cross-node: 1,000 listeners on node2, publish on node1, 200 @ 100/s",
    "f100": "(f) cross-node, 100 listeners on node2, publish on node1, 200 @ 100/s",
    "g": "(g) overload: 10,000 listeners, 10 publishers, 1,000 msgs @ 100/s",
    "r1": "(r) 1 room × 10,000 listeners",
    "r1000": "(r) 1,000 rooms × 10 listeners, same msgs/s in total",
    "r10": "(r) 1 room × 10 listeners alone",
    "r1000one": "(r) 1,000 rooms × 10 listeners, all msgs in 1 room",
    "r1000all": "(r) 1,000 rooms × 10 listeners, msgs over all rooms at the r10 rate",
}


def h2_table(recs):
    """(h), issue 12: SSE over HTTP/2 against TLS HTTP/1.1, watercooler only,
    in a table of its own (its columns are protocols, not servers)."""
    h2, h1 = recs.get(("h", "watercooler-h2")), recs.get(("h", "watercooler-h1"))
    if h2 is None and h1 is None:
        return []
    streams = (get(h2, "h2_streams_per_conn") or 0) if h2 else 0
    conns = (-(-h2["listeners_requested"] // streams) if streams and get(h2, "listeners_requested") else None)
    title = (f"(h) SSE, {fmt(get(h2, 'listeners_requested') or get(h1, 'listeners_requested'))} listeners, "
             f"{fmt(get(h2, 'offered') or get(h1, 'offered'))} msgs @ "
             f"{fmt(get(h2, 'publish_rate_target') or get(h1, 'publish_rate_target'))}/s")
    h2_col = f"HTTP/2 ({conns:,} conn × {streams:,} streams)" if conns else "HTTP/2"
    lines = ["", f"| scenario | metric | {h2_col} | TLS HTTP/1.1 | h2 / h1 | target | met |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for rec, name in ((h2, "HTTP/2"), (h1, "TLS HTTP/1.1")):
        if rec is not None and "error" in rec:
            lines.append(f"| {title} | **{name} failed** | {rec['error']} | | | | |")

    def no_loss(r):
        return r["lost"] == 0 and r["duplicated"] == 0 and r["out_of_order"] == 0 and all_connected(r)

    def both(check):
        def f(a, b):
            ok = [check(r) for r in (a, b) if get(r, "mode") is not None]
            return all(ok) if ok else None
        return f

    def quarter(a, b):
        x, y = get(a, "server_cpu_us_per_delivery"), get(b, "server_cpu_us_per_delivery")
        return None if x is None or not y else x <= 0.25 * y

    def rss_512(a, b):
        x = get(a, "rss_per_listener_bytes")
        return None if x is None else x <= 512

    rows = [
        ("listeners connected", lambda r: f"{r['listeners_connected']:,}/{r['listeners_requested']:,}"
         + (f" ({r['connect_errors']} retried)" if r.get("connect_errors") else ""), 0, "all",
         both(all_connected)),
        ("connect time (s)", "connect_time_s", 2, "", None),
        ("server RSS idle (KiB)", "server_rss_idle_kib", 0, "", None),
        ("RSS per listener (B)", "rss_per_listener_bytes", 0, "h2 ≤ 512 (a stream, with 1/S of its connection)",
         rss_512),
        ("published / offered", lambda r: f"{r['published']:,} / {r['offered']:,}", 0, "", None),
        ("deliveries", "delivered", 0, "", None),
        ("lost / dup / out-of-order", lambda r: f"{r['lost']:,} / {r['duplicated']:,} / {r['out_of_order']:,}", 0,
         "0 loss", both(no_loss)),
        ("latency p50 (ms)", "latency_p50_ms", 2, "", None),
        ("latency p99 (ms)", "latency_p99_ms", 2, "", None),
        ("latency max (ms)", "latency_max_ms", 2, "", None),
        ("fan-out spread p99 (ms)", "spread_p99_ms", 2, "", None),
        ("server CPU µs/delivery", "server_cpu_us_per_delivery", 2, "h2 ≤ ¼ of h1", quarter),
        ("server CPU (% of a core)", "server_busy_pct", 0, "", None),
        ("loadgen CPU (% of a core)", "loadgen_busy_pct", 0, "", None),
    ]
    first = True
    for label, key, digits, target, check in rows:
        met = None
        if check is not None:
            try:
                met = check(h2, h1)
            except (KeyError, TypeError):
                met = None
        mcell = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {title if first else ''} | {label} | {cell(h2, key, digits)} | {cell(h1, key, digits)} | "
                     f"{ratio(get(h2, key), get(h1, key))} | {target} | {mcell} |")
        first = False
    return lines


def main():
    path = sys.argv[1]
    run, recs = load(path, sys.argv[2] if len(sys.argv) > 2 else None)
    quick = any(r.get("quick") for r in recs.values())
    loads = [r.get("loadavg", "") for r in recs.values()]
    due = any(r.get("latency_from") == "due" for r in recs.values())
    wc_bin = recs.get(("node", "watercooler"), {}).get("wc_bin")
    lines = [f"run {run}" + (" (--quick: counts / 10, titles show full counts)" if quick else "")
             + (f"; load average at start {loads[0]}, at end {loads[-1]}" if loads else "")
             + (f"; CPUs {recs[('node', 'watercooler')]['cpu_idle_pct_before']} % idle before"
                if recs.get(("node", "watercooler"), {}).get("cpu_idle_pct_before") is not None else "")
             + (f"; server binary {wc_bin}" if wc_bin else ""), "",
             "Latency counts from each message's due time (start + i / rate)." if due else
             "Latency counts from the send time (loadgen before due-time stamps).", "",
             "| scenario | metric | watercooler | nchan | wc / nchan | target | met |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]

    wn, nn = recs.get(("node", "watercooler")), recs.get(("node", "nchan"))
    if wn:
        b = wn.get("binary_bytes")
        lines.append(f"| node | stripped release binary (MiB) | {b / MIB:.2f} | | | ≤ 1.6 | "
                     f"{'yes' if b <= 1.6 * MIB else '**no**'} |")
        wr, nr = wn.get("idle_rss_kib"), (nn or {}).get("idle_rss_kib")
        lines.append(f"| node | idle node RSS (MiB) | {wr / 1024:.2f} | "
                     f"{'' if nr is None else f'{nr / 1024:.2f}'} | {ratio(wr, nr)} | ≤ 3 | "
                     f"{'yes' if wr <= 3 * 1024 else '**no**'} |")
    for s in TITLES:
        w, n = recs.get((s, "watercooler")), recs.get((s, "nchan"))
        if w is None and n is None:
            continue
        title = TITLES[s]
        for rec, name in ((w, "watercooler"), (n, "nchan")):
            if rec is not None and "error" in rec:
                lines.append(f"| {title} | **{name} failed** | {rec['error']} | | | | |")
        first = True
        for label, key, digits, target, check in rows_for(s):
            wv, nv = get(w, key), get(n, key)
            if n is not None and "na" in n:
                ncell = "n/a" if first else ""
            elif n is None and s in ROOMS:
                ncell = ""  # watercooler only
            else:
                ncell = cell(n, key, digits)
            met = None
            if check is not None and get(w, "mode") is not None:
                try:
                    met = check(w, n if n is not None and "mode" in n else None)
                except (KeyError, TypeError):
                    met = None
            mcell = "" if met is None else ("yes" if met else "**no**")
            lines.append(f"| {title if first else ''} | {label} | {cell(w, key, digits)} | {ncell} | "
                         f"{ratio(wv, nv)} | {target} | {mcell} |")
            first = False
        for rec, name in ((w, "watercooler"), (n, "nchan")):
            if rec is not None and "na" in rec:
                lines.append(f"| | {name} n/a | | {rec['na']} | | | |")
    lines += rooms_summary(recs)
    lines += h2_table(recs)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
