"""A WebSocket client over HTTP/2 (RFC 8441 extended CONNECT) for the conformance suite.

Browsers open WebSockets this way on an HTTP/2 connection whose server sent
SETTINGS_ENABLE_CONNECT_PROTOCOL = 1. This speaks it with the `h2` protocol stack from PyPI (no
WebSocket library speaks RFC 8441): TLS with ALPN h2 to 127.0.0.1:PORT (SNI and certificate
check against CA, an optional client certificate), the preface, a CONNECT with
`:protocol: websocket` for PATH, then one masked text frame as DATA, and the echoed frame back.

Prints one JSON line: {"status": 101, "echo": "..."} when the stream opened (a 200 to the
CONNECT: 101 is what the HTTP/1.1 client reports for the same outcome, so scenarios expect one
value), {"status": N} when the CONNECT was answered otherwise, or {"error": "..."} when the
server did not offer extended CONNECT or the connection failed. Exits 0 unless the arguments
are wrong; the harness reads the JSON.
"""

import argparse
import json
import os
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def frame(text: str) -> bytes:
    """One final, masked text frame (RFC 6455 5.2): a client must mask."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def unframe(data: bytes):
    """The text of the first complete frame in `data`, or None while it is incomplete."""
    if len(data) < 2:
        return None
    length = data[1] & 0x7F
    offset = 2
    if length == 126:
        if len(data) < 4:
            return None
        length = struct.unpack(">H", data[2:4])[0]
        offset = 4
    if data[1] & 0x80:
        offset += 4
    if len(data) < offset + length:
        return None
    return data[offset : offset + length].decode(errors="replace")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--path", default="/")
    p.add_argument("--message", default="hello over tlsgate")
    a = p.parse_args()

    deadline = time.monotonic() + 20
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.set_alpn_protocols(["h2"])
    if a.cert:
        ctx.load_cert_chain(a.cert, a.key)
    try:
        raw = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        sock = ctx.wrap_socket(raw, server_hostname=a.sni)
        if sock.selected_alpn_protocol() != "h2":
            print(json.dumps({"error": f"ALPN chose {sock.selected_alpn_protocol()!r}, not h2"}))
            return 0
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())

        stream = None
        status = None
        received = b""
        while time.monotonic() < deadline:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                print(json.dumps({"error": "the server closed the connection", "status": status}))
                return 0
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged) and stream is None:
                    offered = conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                    if offered != 1:
                        print(json.dumps({"error": "the server does not offer extended CONNECT"}))
                        return 0
                    stream = conn.get_next_available_stream_id()
                    conn.send_headers(
                        stream,
                        [
                            (":method", "CONNECT"),
                            (":protocol", "websocket"),
                            (":scheme", "https"),
                            (":path", a.path),
                            (":authority", f"{a.sni}:{a.port}"),
                            ("sec-websocket-version", "13"),
                        ],
                    )
                elif isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                    if status != 200:
                        print(json.dumps({"status": status}))
                        return 0
                    conn.send_data(stream, frame(a.message))
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    received += event.data
                    echo = unframe(received)
                    if echo is not None:
                        print(json.dumps({"status": 101, "echo": echo}))
                        return 0
                elif isinstance(event, h2.events.StreamReset):
                    print(json.dumps({"error": f"stream reset ({event.error_code})", "status": status}))
                    return 0
            sock.sendall(conn.data_to_send())
        print(json.dumps({"error": "timed out", "status": status}))
    except Exception as e:  # noqa: BLE001 - every failure is an outcome to report
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
