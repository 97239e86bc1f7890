"""Running the prediction API with uvicorn: in the foreground, or in a background thread."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP (not 0): asyncio only turns Nagle's algorithm off on
    # accepted sockets whose proto says TCP, and with Nagle on every keep-alive response
    # (written as headers, then body) waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )


def serve(app: FastAPI, *, host: str = LOOPBACK, port: int = 8000) -> None:
    """Serves ``app`` until interrupted (Ctrl-C)."""
    sock = bind_socket(host, port)
    uvicorn.Server(_config(app, host, port)).run(sockets=[sock])


class BackgroundServer:
    """Serves an app from a thread on a free loopback port; a context manager.

    Example:
        >>> import httpx
        >>> from covertml.models import create_model
        >>> from covertml.serve.app import create_app
        >>> app = create_app(create_model("mlp", input_shape=(1, 2, 2), num_classes=3),
        ...                  input_shape=(1, 2, 2), num_classes=3)
        >>> with BackgroundServer(app) as server:
        ...     httpx.get(server.url + "/health").json()["status"]
        'ok'
    """

    def __init__(self, app: FastAPI, *, host: str = LOOPBACK, port: int = 0) -> None:
        self.sock = bind_socket(host, port)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(_config(app, host, self.port))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:53411``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, *, timeout: float = 20.0) -> BackgroundServer:
        """Starts the server and waits until it accepts requests."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the prediction server did not start on {self.url}")
            time.sleep(0.01)
        log.info("prediction server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Asks the server to finish and waits for it."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
