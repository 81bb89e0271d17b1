"""SSE fan-out over HTTP/2 against TLS HTTP/1.1 (issue 12): C connections x
S streams (h2, TLS with ALPN h2) or C*S TLS HTTP/1.1 connections (h1tls),
the same M messages at R/s; prints the node's RSS per listener, its CPU per
delivery (utime+stime from /proc) and loss. A stand-in until loadgen has an
HTTP/2 mode: the latency it prints is bound by this Python client's own
parsing, not the node's.

Usage (a venv with `h2`; pin the node and this to different cores):
  taskset -c 1 python bench/h2_sse.py target/release/watercooler h2 50 100 100 20
  taskset -c 1 python bench/h2_sse.py target/release/watercooler h1tls 50 100 100 20
"""
import os, re, selectors, socket, ssl, subprocess, sys, threading, time, urllib.request
import h2.config, h2.connection, h2.events

BIN, MODE, CONNS, STREAMS, MSGS, RATE = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
TCK = os.sysconf("SC_CLK_TCK")
node = subprocess.Popen(["taskset", "-c", "0", BIN, "--bind", "127.0.0.1", "--port", "0", "--secure-port", "0",
                         "--log", "warn", "--backlog", "0", "--publish-rate", "0", "--max-connections", "60000"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
http = int(re.search(r":(\d+)$", node.stdout.readline().strip()).group(1))
https = int(re.search(r":(\d+)$", node.stdout.readline().strip()).group(1))
def cpu():
    f = open(f"/proc/{node.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TCK
def rss():
    for l in open(f"/proc/{node.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
sel = selectors.DefaultSelector()
got = {"n": 0}
rss0 = rss()
conns = []
if MODE == "h2":
    ctx.set_alpn_protocols(["h2"])
    for i in range(CONNS):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", https)), server_hostname="localhost")
        assert s.selected_alpn_protocol() == "h2"
        c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        c.initiate_connection(); c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        c.increment_flow_control_window(1 << 30)
        for j in range(STREAMS):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, [(":method", "GET"), (":path", "/listen"), (":scheme", "https"), (":authority", "x")], end_stream=True)
        s.sendall(c.data_to_send()); s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, c); conns.append(s)
else:
    ctx.set_alpn_protocols(["http/1.1"])
    for i in range(CONNS * STREAMS):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", https)), server_hostname="localhost")
        s.sendall(b"GET /listen HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"); s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, None); conns.append(s)
listeners = CONNS * STREAMS
lat = []
def count(data):
    now = time.time()
    for part in data.split(b"data: m")[1:]:
        got["n"] += 1
        try:
            t = float(part.split(b"-", 1)[1].split(b"\n", 1)[0])
            lat.append(now - t)
        except (IndexError, ValueError):
            pass
stop = False
def reader():
    while not stop:
        for key, _ in sel.select(0.2):
            s, c = key.fileobj, key.data
            try:
                while True:
                    d = s.recv(1 << 20)
                    if not d: sel.unregister(s); break
                    if c is None: count(d); continue
                    for e in c.receive_data(d):
                        if isinstance(e, h2.events.DataReceived):
                            count(e.data); c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                    out = c.data_to_send()
                    if out: s.sendall(out)
            except (ssl.SSLWantReadError, BlockingIOError): pass
t = threading.Thread(target=reader, daemon=True); t.start()
deadline = time.time() + 60
while True:
    m = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics").read().decode()
    n = int(re.search(r"^watercooler_listeners (\d+)", m, re.M).group(1))
    if n >= listeners or time.time() > deadline: break
    time.sleep(0.2)
time.sleep(1.0)
rss1 = rss(); c0 = cpu()
for i in range(MSGS):
    due = i / RATE; now = time.time()
    req = urllib.request.Request(f"http://127.0.0.1:{http}/publish", data=f"message=m{i}-{time.time():.6f}".encode(), method="POST")
    try: urllib.request.urlopen(req)
    except Exception: pass
    time.sleep(max(0, 1 / RATE - (time.time() - now)))
want = MSGS * listeners
deadline = time.time() + 60
while got["n"] < want and time.time() < deadline: time.sleep(0.05)
c1 = cpu(); stop = True
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
print(f"latency from publish: p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms (as this Python client reads)")
print(f"{MODE}: {CONNS} conns x {STREAMS} = {listeners} listeners (node saw {n}); RSS {rss0} -> {rss1} KiB = {(rss1-rss0)*1024/listeners:.0f} B/listener; "
      f"{got['n']}/{want} deliveries ({want-got['n']} lost); server CPU {c1-c0:.2f}s = {(c1-c0)*1e6/max(got['n'],1):.2f} us/delivery")
node.terminate()
