"""`bitnet serve`: mounts the OpenAI-compatible server's own command (`bitnet.server.add_arguments` / `run`)."""
from __future__ import annotations

import argparse

from bitnet.cli import _common


def register(sub: argparse._SubParsersAction) -> None:
    # bitnet.server imports only the standard library here; the server extra is needed only when it runs.
    from bitnet.server import add_arguments, run

    p = sub.add_parser(
        "serve", help="serve the model over an OpenAI-compatible HTTP API",
        description="An OpenAI-compatible HTTP server (POST /v1/chat/completions and /v1/completions, streaming "
                    "as server-sent events; GET /v1/models, /health, /metrics). Needs the server extra: "
                    "pip install 'bitnet-engine[server]'.")
    add_arguments(p)
    _common.add_debug(p)
    p.set_defaults(func=run)
