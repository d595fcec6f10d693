"""Debian's nginx as the load balancer in front of two collectors (the README's example), as a
real process on a free port, for tests/integration/test_scale_out*.py."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    access_log off;
    client_max_body_size 64m;
    # Request bodies stay in memory: a body written to client_body_temp_path is written by the
    # worker, which runs as nobody when nginx is started as root and cannot enter the
    # test's 0700 temp folder (seen with --basetemp in a 0700 folder: every request got a 500).
    client_body_buffer_size 64m;
    upstream collectors {{
        server 127.0.0.1:{port_a} max_fails=1 fail_timeout=2s;
        server 127.0.0.1:{port_b} max_fails=1 fail_timeout=2s;
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://collectors;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # A collector that refused the connection or answered 502/503 before reading the
            # request: the next one takes it. A request already sent is not repeated by nginx
            # (POST): the sender's retry is, with the same source and range.
            proxy_next_upstream error timeout http_502 http_503;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, run: Path, port: int, upstreams: tuple[int, int]):
        self.run = run
        self.port = port
        run.mkdir(parents=True, exist_ok=True)
        self.conf = run / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(run=run, port=port, port_a=upstreams[0], port_b=upstreams[1]))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [binary, "-p", str(self.run), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self.run / "stderr.log").open("wb"),
        )
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited: {(self.run / 'stderr.log').read_text()}")
            assert time.monotonic() < deadline, "nginx did not listen within 10 s"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def require_nginx() -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is not installed (.ci/run installs Debian's nginx-light)")
