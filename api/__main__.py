"""``python -m api [--host 127.0.0.1] [--port 8080]``: run the service with uvicorn.

Bind it to a private address only (the design: the Mini fleet's Tailscale interface), e.g. ``--host 100.x.y.z``.
Configuration comes from the environment (api/config.py, README "API service").
"""
from __future__ import annotations

import argparse
import logging

import uvicorn

from .app import create_app

# uvicorn's options of the service (bench/api_load.py serves its bare baseline app with the same ones).
UVICORN_OPTIONS = {"loop": "auto", "http": "auto", "timeout_graceful_shutdown": 30}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level, **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
