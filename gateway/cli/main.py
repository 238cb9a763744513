"""The ``coldbrew`` command: ``serve`` runs the gateway; ``invoke`` calls an endpoint;
``deploy``, ``endpoints``, ``describe`` and ``delete`` drive the control plane (the
commands themselves live in ``gateway.cli.deploy`` and ``gateway.cli.commands``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import orjson

from gateway.cli import commands as cli_commands
from gateway.cli import deploy as cli_deploy
from gateway.cli.resources import DEFAULT_WAIT_S
from gateway.cli.session import Session
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
    add_control_commands(commands)
    return parser


def add_control_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = commands.add_parser(
        "deploy",
        help="create or update an endpoint from a model directory and wait until it serves",
    )
    deploy.add_argument(
        "source",
        metavar="DIR",
        help="model directory or model.tar.gz (a path the gateway can read), or an s3:// URL",
    )
    deploy.add_argument("--name", required=True, help="endpoint name")
    deploy.add_argument("--memory", type=int, default=2048, metavar="MB", help="MemorySizeInMB")
    deploy.add_argument(
        "--max-concurrency", type=int, default=20, metavar="N", help="MaxConcurrency"
    )
    deploy.add_argument(
        "--provisioned", type=int, default=None, metavar="N", help="ProvisionedConcurrency"
    )
    deploy.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="how long to wait for the endpoint",
    )
    commands.add_parser("endpoints", help="list endpoints with their settings and activity")
    describe = commands.add_parser("describe", help="print DescribeEndpoint as JSON")
    describe.add_argument("name", help="endpoint name")
    delete = commands.add_parser(
        "delete", help="delete an endpoint (and the model and config deploy made for it)"
    )
    delete.add_argument("name", help="endpoint name")
    delete.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="how long to wait for the endpoint to go",
    )
    for command in (deploy, commands.choices["endpoints"], describe, delete):
        command.add_argument(
            "--endpoint-url",
            default=None,
            help="gateway URL (default: $AWS_ENDPOINT_URL_SAGEMAKER, $AWS_ENDPOINT_URL, "
            "then the local gateway)",
        )
        command.add_argument("--region", default=None)


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
    from gateway.edge.server import run
    from gateway.logs import configure_logging

    try:
        settings = settings_from_args(args)
        configure_logging(settings.server.log_level, settings.server.log_format)
        return run(settings, demo=args.demo, config_path=args.config)
    except SettingsError as error:
        print(f"coldbrew: {error}", file=sys.stderr)
        return 2


def read_body(spec: str) -> bytes:
    if spec.startswith("@"):
        return Path(spec[1:]).read_bytes()
    return spec.encode()


def cmd_invoke(args: argparse.Namespace) -> int:
    from gateway.cli.client import client_config, invoke_endpoint

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


def control_session(args: argparse.Namespace) -> Session:
    from gateway.cli.client import control_config

    config = control_config(os.environ, endpoint_url=args.endpoint_url, region=args.region)
    return Session(config, sys.stdout, sys.stderr)


def cmd_deploy(args: argparse.Namespace) -> int:
    return cli_deploy.deploy(
        control_session(args),
        args.source,
        args.name,
        memory_mb=args.memory,
        max_concurrency=args.max_concurrency,
        provisioned=args.provisioned,
        timeout_s=args.timeout,
    )


def cmd_endpoints(args: argparse.Namespace) -> int:
    return cli_commands.endpoints(control_session(args))


def cmd_describe(args: argparse.Namespace) -> int:
    return cli_commands.describe(control_session(args), args.name)


def cmd_delete(args: argparse.Namespace) -> int:
    return cli_commands.delete(control_session(args), args.name, timeout_s=args.timeout)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": cmd_serve,
        "invoke": cmd_invoke,
        "deploy": cmd_deploy,
        "endpoints": cmd_endpoints,
        "describe": cmd_describe,
        "delete": cmd_delete,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
