"""Node memory per HTTP/2 stream (issue 12): opens CONNS prior-knowledge
HTTP/2 connections to a node's plain port, then STREAMS SSE streams on each,
and prints the node's RSS per connection and per extra stream.

Usage: python bench/h2_streams_mem.py PORT CONNS STREAMS NODE_PID  (a venv with h2)
"""
import socket
import sys
import time

import h2.connection, h2.config, h2.events
port, conns, streams = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
pid = int(sys.argv[4])
cs = []
before = rss(pid)
for i in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    c.initiate_connection(); s.sendall(c.data_to_send())
    cs.append((s, c))
time.sleep(0.5)
mid = rss(pid)
for s, c in cs:
    for j in range(streams):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(":method","GET"),(":path","/listen"),(":scheme","http"),(":authority","x")], end_stream=True)
    s.sendall(c.data_to_send())
time.sleep(1.5)
for s, c in cs:
    s.setblocking(False)
    try:
        while True:
            d = s.recv(1<<20)
            if not d: break
            ev = c.receive_data(d)
            for e in ev:
                if isinstance(e, h2.events.DataReceived): c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            s.sendall(c.data_to_send())
    except BlockingIOError: pass
time.sleep(1.0)
after = rss(pid)
print(f"conns {conns} x streams {streams}: RSS {before} -> {mid} (conns) -> {after} KiB; per connection {(mid-before)*1024/conns:.0f} B, per stream {(after-mid)*1024/(conns*streams):.0f} B")
