"""The ``coldbrew`` command: ``serve`` runs the gateway; ``invoke`` calls an endpoint."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import orjson

from gateway.settings import Settings, SettingsError, load_settings, override


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coldbrew", description="Serverless inference that speaks the SageMaker API."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway in the foreground")
    serve.add_argument("--config", type=Path, help="TOML config file (config/coldbrew.toml)")
    serve.add_argument("--host", help="listen address (server.host)")
    serve.add_argument("--port", type=int, help="listen port, 0 for any free one (server.port)")
    serve.add_argument("--state-dir", help="folder for persistent state (server.state_dir)")
    serve.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="worker keep-alive (pool.idle_timeout_s)",
    )
    serve.add_argument("--demo", action="store_true", help="deploy the iris demo endpoint 'demo'")

    invoke = commands.add_parser("invoke", help="invoke an endpoint and print its answer")
    invoke.add_argument("name", help="endpoint name")
    invoke.add_argument("body", nargs="?", default="", help="request body, or @FILE to read one")
    invoke.add_argument("--content-type", default="application/json")
    invoke.add_argument("--accept", default=None)
    invoke.add_argument("--endpoint-url", default=None, help="gateway URL (default: local)")
    invoke.add_argument("--region", default=None)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    overrides = {
        "server.host": args.host,
        "server.port": args.port,
        "server.state_dir": args.state_dir,
        "pool.idle_timeout_s": args.idle_timeout,
    }
    for key, value in overrides.items():
        if value is not None:
            settings = override(settings, key, value)
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.server import configure_logging, run

    try:
        settings = settings_from_args(args)
        configure_logging(settings.server.log_level)
        return run(settings, demo=args.demo)
    except SettingsError as error:
        print(f"coldbrew: {error}", file=sys.stderr)
        return 2


def read_body(spec: str) -> bytes:
    if spec.startswith("@"):
        return Path(spec[1:]).read_bytes()
    return spec.encode()


def cmd_invoke(args: argparse.Namespace) -> int:
    from gateway.client import client_config, invoke_endpoint

    config = client_config(os.environ, endpoint_url=args.endpoint_url, region=args.region)
    try:
        result = invoke_endpoint(
            config,
            args.name,
            read_body(args.body),
            content_type=args.content_type,
            accept=args.accept,
        )
    except OSError as error:
        print(f"coldbrew: cannot reach {config.url}: {error}", file=sys.stderr)
        return 1
    if 200 <= result.status < 300:
        sys.stdout.buffer.write(result.body)
        if not result.body.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
        return 0
    code = result.headers.get("x-amzn-ErrorType", str(result.status))
    try:
        message = orjson.loads(result.body).get("Message")
    except (orjson.JSONDecodeError, AttributeError):
        message = result.body.decode("utf-8", "replace")
    print(f"coldbrew: {code}: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"serve": cmd_serve, "invoke": cmd_invoke}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
