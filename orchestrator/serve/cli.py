"""``lav2 serve`` (registered by ``orchestrator.cli``). FastAPI and uvicorn are imported only when it runs."""
from __future__ import annotations

import argparse
import sys

from ..commands import DEFAULT_BATCH_SIZE
from .config import API_KEY_ENV, DEFAULT_MAX_BODY_BYTES

_DESCRIPTION = f"""\
Serves one model over HTTP: an OpenAI-compatible API (POST /v1/chat/completions, /v1/completions, GET /v1/models),
visual QA with expert tools (POST /v1/vqa, the same fields as `lav2 ask --json`), GET /health, GET /metrics
(Prometheus) and a web page at / to ask questions about an image. The model loads once (requests get 503 until it
is ready); concurrent requests are batched by the model's engine. Needs the [serve] extra:
pip install 'llama-adapter-v2[serve]'.

Security: listens on 127.0.0.1 only unless --host says otherwise. With --api-key (or ${API_KEY_ENV}) every API
request needs 'Authorization: Bearer KEY'. Requests cannot make the server read its own files unless
--allow-local-files, nor fetch image URLs from non-public addresses unless --allow-private-urls."""


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    from ..commands import _pipeline_args

    p = sub.add_parser("serve", help="OpenAI-compatible HTTP API, visual QA and a web page for one model",
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every interface "
                        "— then set --api-key)")
    g.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    g.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' on every API request (default: ${API_KEY_ENV} if "
                        "set, else no key; /health and the page's HTML stay open, the page asks for the key)")
    g.add_argument("--served-model-name", default=None, metavar="NAME",
                   help="the model id /v1/models lists and requests name (default: the --model name, e.g. "
                        "smollm2-135m; \"default\" is always accepted too)")
    g.add_argument("--allow-local-files", action="store_true",
                   help="let requests name image files on the server (paths, file:// URLs); off by default, so a "
                        "network client can never make the server read its files")
    g.add_argument("--no-image-urls", action="store_true",
                   help="refuse http(s) image URLs (no fetches on a client's behalf); data URLs still work")
    g.add_argument("--allow-private-urls", action="store_true",
                   help="let image URLs lead to loopback, private-network and link-local addresses (an intranet "
                        "image server); off by default, so a client cannot use the server to reach what only the "
                        "server can reach — its own ports, the local network, a cloud metadata service")
    g.add_argument("--max-body-mb", type=float, default=DEFAULT_MAX_BODY_BYTES / 2**20,
                   help=f"largest request body in MiB; larger ones get 413 (default {DEFAULT_MAX_BODY_BYTES >> 20})")
    g.add_argument("--request-timeout", type=float, default=300.0,
                   help="seconds a request may take in all (queue, experts, generation) before it is cancelled "
                        "(504, or an error event in a stream; default 300)")
    g.add_argument("--max-pending", type=int, default=64,
                   help="requests the server holds at once (generating or waiting); more get 429 with Retry-After "
                        "(default 64)")
    g.add_argument("--max-batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help=f"requests the engine decodes together in one batch (default {DEFAULT_BATCH_SIZE}, where "
                        "throughput levels off on a 2-core CPU; more memory per row for the KV cache)")
    g.add_argument("--expert-workers", type=int, default=None, metavar="N",
                   help="/v1/vqa requests running their experts (OCR, detection, ...) at once; the others wait "
                        "(default: the number of CPU cores)")
    g.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default info)")
    _pipeline_args(p, default_tokens=256)
    for action in p._actions:  # what the shared model flags mean for a server
        if action.dest in _SERVE_HELP:
            action.help = _SERVE_HELP[action.dest]
    p.set_defaults(func=cmd_serve)


_SERVE_HELP = {
    "experts": "default expert policy of /v1/vqa and the page (a request may choose its own): auto (keyword rules "
               "on the question, default), all, none, model (the language model judges each expert), or a "
               "comma-separated list such as ocr,detection",
    "max_new_tokens": "new tokens for requests that do not set max_tokens, and the length limit of /v1/vqa answers "
                      "(default 256; always capped by the context left after the prompt)",
    "temperature": "temperature for requests that do not set one (default 0 = greedy, reproducible; OpenAI's "
                   "own default would be 1)",
    "system": "system prompt of /v1/vqa answers (default: the prompt style's); chat requests bring their own",
}


def cmd_serve(args: argparse.Namespace) -> int:
    from core_model.errors import ConfigError

    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"lav2 serve needs the [serve] extra ({e.name} is missing): "
                          "pip install 'llama-adapter-v2[serve]'") from None
    from ..commands import build_pipeline
    from .app import create_app
    from .config import ServeConfig
    from .server import serve

    import os

    workers = args.expert_workers or os.cpu_count() or 2
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0-65535, got {args.port}")
    config = ServeConfig(host=args.host, port=args.port, api_key=args.api_key,
                         allow_local_files=args.allow_local_files, allow_image_urls=not args.no_image_urls,
                         allow_private_urls=args.allow_private_urls,
                         max_body_bytes=int(args.max_body_mb * 2**20), request_timeout=args.request_timeout,
                         max_pending=args.max_pending, max_batch_size=args.max_batch_size,
                         expert_workers=workers, default_max_tokens=args.max_new_tokens,
                         default_temperature=args.temperature, model_id=args.served_model_name,
                         experts=args.experts, load={"model": args.model})
    app = create_app(config, loader=lambda: build_pipeline(args, expert_workers=workers))
    print(f"lav2 serve: loading {args.model}; listening on http://{_display(args.host)}:{args.port} "
          f"(page at /, API at /v1{', API key required' if config.api_key else ''})", file=sys.stderr)
    if not config.api_key and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"lav2 serve: warning: listening on {args.host} without an API key: anyone who can reach this "
              "machine can use the model (set --api-key or LAV2_API_KEY)", file=sys.stderr)
    error = serve(config, app=app, log_level=args.log_level)
    if error is not None:
        print(f"lav2 serve: error: {error}", file=sys.stderr)
        return 2
    return 0


def _display(host: str) -> str:
    return f"[{host}]" if ":" in host else host
