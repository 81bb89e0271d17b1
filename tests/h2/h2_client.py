"""Python h2 (hyper-h2) as a foreign HTTP/2 client of a watercooler node.

Usage: python h2_client.py PORT (the node's plain port: h2 with prior
knowledge). Each check opens its own connection and prints one line; the
exit status is non-zero if any check failed. Run by tests/h2.rs.
"""
import socket
import sys
import time
import urllib.request

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

PORT = int(sys.argv[1])


class Client:
    def __init__(self, settings=None):
        self.sock = socket.create_connection(("127.0.0.1", PORT))
        self.sock.settimeout(5)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, method="GET", body=None):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "http"),
                   (":authority", f"127.0.0.1:{PORT}")]
        if body is not None:
            headers.append(("content-type", "application/x-www-form-urlencoded"))
        self.conn.send_headers(sid, headers, end_stream=body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self.flush()
        return sid

    def events(self, done, ack=True, timeout=5):
        got = []
        deadline = time.time() + timeout
        while not done(got):
            if time.time() > deadline:
                raise TimeoutError(f"waiting; got {got}")
            data = self.sock.recv(65536)
            if not data:
                got.append("eof")
                break
            for e in self.conn.receive_data(data):
                got.append(e)
                if ack and isinstance(e, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            self.flush()
        return got


def ended(sids):
    return lambda evs: all(any(isinstance(e, h2.events.StreamEnded) and e.stream_id == s
                               for e in evs) for s in sids)


def body_of(evs, sid):
    return b"".join(e.data for e in evs if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)


def status_of(evs, sid):
    for e in evs:
        if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
            return dict(e.headers)[":status"]


def has(sid, text):
    return lambda evs: text.encode() in body_of(evs, sid)


def publish(text):
    """Over HTTP/1.1, from another connection."""
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}/publish",
                                 data=("message=" + text).encode(), method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
    except urllib.error.HTTPError as e:  # the 303's target is followed or not
        assert e.code == 303, e


def check_get():
    c = Client()
    sid = c.request("/")
    evs = c.events(ended([sid]))
    assert status_of(evs, sid) == "200", evs
    assert b"<h2>Node: " in body_of(evs, sid)


def check_post():
    c = Client()
    sid = c.request("/publish", "POST", b"message=hello+over+h2")
    evs = c.events(ended([sid]))
    assert status_of(evs, sid) == "303", evs


def check_sse():
    c = Client()
    sid = c.request("/listen")
    c.events(has(sid, "event: presence"))
    publish("sse-over-h2")
    evs = c.events(has(sid, "data: sse-over-h2"))
    assert status_of(evs, sid) is None or status_of(evs, sid) == "200"


def check_many_streams():
    c = Client()
    sids = [c.request("/listen") for _ in range(100)]
    c.events(lambda evs: all(b"event: presence" in body_of(evs, s) for s in sids), timeout=10)
    publish("to-a-hundred")
    c.events(lambda evs: all(b"data: to-a-hundred" in body_of(evs, s) for s in sids), timeout=10)


def check_flow_control():
    # A 16-byte stream window: the node must wait for our updates.
    c = Client({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16})
    c.events(lambda evs: any(isinstance(e, h2.events.SettingsAcknowledged) for e in evs))
    sid = c.request("/listen")
    got = c.events(lambda evs: any(isinstance(e, h2.events.DataReceived) for e in evs), ack=False)
    first = body_of(got, sid)
    assert 0 < len(first) <= 16, len(first)
    c.sock.settimeout(0.4)
    try:
        more = c.events(lambda evs: False, ack=False, timeout=0.3)
    except (TimeoutError, socket.timeout):
        more = []
    assert body_of(more, sid) == b"", more
    c.sock.settimeout(5)
    c.conn.acknowledge_received_data(len(first), sid)
    c.conn.increment_flow_control_window(1 << 20, sid)
    c.flush()
    evs = c.events(has(sid, "event: presence"))
    assert b"event: presence" in first + body_of(evs, sid)


def check_ping():
    c = Client()
    c.conn.ping(b"watercoo")
    c.flush()
    evs = c.events(lambda evs: any(isinstance(e, h2.events.PingAckReceived) for e in evs))
    assert [e.ping_data for e in evs if isinstance(e, h2.events.PingAckReceived)] == [b"watercoo"]


def check_rapid_reset():
    c = Client()
    for _ in range(250):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "GET"), (":path", "/listen"), (":scheme", "http"),
                                  (":authority", "x")], end_stream=True)
        c.conn.reset_stream(sid)
    c.flush()
    evs = c.events(lambda evs: any(isinstance(e, h2.events.ConnectionTerminated) for e in evs)
                   or "eof" in evs)
    term = [e for e in evs if isinstance(e, h2.events.ConnectionTerminated)]
    assert term and term[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, term


failed = 0
for check in [check_get, check_post, check_sse, check_many_streams, check_flow_control,
              check_ping, check_rapid_reset]:
    try:
        check()
        print(f"ok   {check.__name__}")
    except Exception as e:  # noqa: BLE001 - report and go on
        failed += 1
        print(f"FAIL {check.__name__}: {type(e).__name__}: {e}")
sys.exit(1 if failed else 0)
