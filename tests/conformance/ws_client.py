"""A real WebSocket client for the conformance suite (the `websockets` package from PyPI).

Connects to 127.0.0.1:PORT with TLS (SNI and certificate check against CA, an optional client
certificate), opens wss://SNI:PORT/PATH, sends one text message and waits for it to come back.
Prints one JSON line: {"status": 101, "echo": "..."} when the upgrade succeeded, or
{"status": N} when the server answered the upgrade with another status, or {"error": "..."}
when the connection failed. Always exits 0 unless the arguments are wrong; the harness reads
the JSON.
"""

import argparse
import json
import socket
import ssl
import sys

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


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

    ctx = ssl.create_default_context(cafile=a.ca)
    # HTTP/1.1 only: WebSocket over HTTP/2 (RFC 8441) is not what this client speaks.
    ctx.set_alpn_protocols(["http/1.1"])
    if a.cert:
        ctx.load_cert_chain(a.cert, a.key)
    sock = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    try:
        with connect(
            f"wss://{a.sni}:{a.port}{a.path}",
            sock=sock,
            ssl=ctx,
            server_hostname=a.sni,
            proxy=None,
            # 20 s, not curl's 10: one local run (both cores busy compiling) saw no upgrade
            # answer within 10 s on the native host, and 12 runs since, under load, never did.
            # The cause is not found (see issue 12's note); a longer wait tells a slow answer
            # from none the next time.
            open_timeout=20,
            close_timeout=5,
            compression=None,
        ) as ws:
            ws.send(a.message)
            echo = ws.recv(timeout=10)
            print(json.dumps({"status": 101, "echo": echo}))
    except InvalidStatus as e:
        print(json.dumps({"status": e.response.status_code}))
    except Exception as e:  # noqa: BLE001 - every failure is an outcome to report
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
