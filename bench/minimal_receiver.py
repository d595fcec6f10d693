"""The floor a Python collector is measured against: an ASGI app that only counts lines.

It reads the whole body of ``POST /events``, counts newline-separated lines and answers
``{"accepted": N}``; nothing is parsed or stored. ``bench/collector.py`` runs it under the same
load as the collector and prints the ratio between the two.

Run on its own::

    python bench/minimal_receiver.py --server uvicorn --port 8799
    python bench/minimal_receiver.py --server granian --port 8799
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HEADERS = [(b"content-type", b"application/json")]
lines_seen = 0


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Count the lines of every POST body; 200 on ``/healthz`` so a starter can wait for it."""
    global lines_seen
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    count = 0
    tail = b""
    more = True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        count += chunk.count(b"\n")
        if chunk:
            tail = chunk[-1:]
        more = message.get("more_body", False)
    if tail and tail != b"\n":
        count += 1  # a last line without its newline
    lines_seen += count
    body = b'{"accepted":%d,"invalid":0,"duplicate":false}' % count
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    if args.server == "uvicorn":
        import uvicorn

        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            http="httptools",
            loop="uvloop",
            log_level="warning",
            access_log=False,
        )
    else:
        from granian.constants import Interfaces, Loops
        from granian.server import Server

        # Granian imports its target by name: this file's folder is on sys.path when run as a script.
        Server(
            "minimal_receiver:app",
            address=args.host,
            port=args.port,
            interface=Interfaces.ASGI,
            workers=1,
            loop=Loops.uvloop,
            log_access=False,
        ).serve()


if __name__ == "__main__":
    main()
