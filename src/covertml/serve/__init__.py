"""The label-only prediction API (FastAPI + uvicorn) and the adversary's HTTP client.

Example:
    >>> from covertml.serve import ServeLimits
    >>> ServeLimits(max_batch=1024).max_batch
    1024
"""

from covertml.serve.app import app_from_file, create_app
from covertml.serve.client import EndpointError, HTTPOracle
from covertml.serve.limits import QueryGate, ServeLimits
from covertml.serve.runner import BackgroundServer, is_loopback, serve

__all__ = [
    "BackgroundServer",
    "EndpointError",
    "HTTPOracle",
    "QueryGate",
    "ServeLimits",
    "app_from_file",
    "create_app",
    "is_loopback",
    "serve",
]
