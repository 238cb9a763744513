"""The code a worker process runs: load the model (unless it was forked with the model
already loaded), send READY (or ``failed``), then answer ``invoke`` frames one at a time
until the gateway closes the socket (the messages: ``workers.wire.messages``).

A fresh worker starts as ``python -u -m workers.child.serve --fd N --parent PID ...``; a worker
forked from a zygote enters ``serve`` directly. Model output on stdout/stderr goes to a
pipe the gateway logs; the protocol runs on its own socket, so nothing a model prints can
corrupt it.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from workers.wire.framing import ProtocolError, recv_frame, send_frame
from workers.wire.kernel import WORKER_NAME, die_with_parent, set_process_name

if TYPE_CHECKING:
    from workers.child.handler import ModelHandler, Response
    from workers.child.tracing import WorkerTracing
    from workers.wire.messages import Failed, Invoke, Result, WorkerReady


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="workers.child.serve")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--max-response-bytes", type=int, required=True)
    parser.add_argument("--placement", default=None, help="JSON of a wire Placement")
    return parser.parse_args(argv)


def error_result(status: int, message: str) -> tuple[Result, bytes]:
    header: Result = {"t": "result", "status": status, "content_type": "text/plain"}
    return header, message.encode("utf-8", "replace")


def load_model(sock: socket.socket, model_dir: Path) -> ModelHandler | None:
    """Load the model; on failure tell the gateway (``failed``) and return None."""
    from workers.child.handler import ModelHandler

    try:
        return ModelHandler.load(model_dir, os.environ.get("SAGEMAKER_PROGRAM"))
    except BaseException as exc:  # any failure to load, SystemExit included, is reported
        detail = traceback.format_exc()
        sys.stderr.write(detail)
        failed: Failed = {"t": "failed", "message": f"{type(exc).__name__}: {exc}"}
        send_frame(sock, failed, detail.encode())
        return None


def serve(
    sock: socket.socket,
    model_dir: Path,
    max_response_bytes: int,
    handler: ModelHandler | None = None,
) -> int:
    """Load the model unless ``handler`` already holds it, handshake, and answer requests
    until EOF. Returns the exit code."""
    started = time.perf_counter()
    loaded_here = handler is None
    if handler is None:
        handler = load_model(sock, model_dir)
        if handler is None:
            return 3
    load_ms = (time.perf_counter() - started) * 1000.0
    ready: WorkerReady = {
        "t": "ready",
        "pid": os.getpid(),
        "load_ms": load_ms,
        # A worker forked with the model loaded imported and loaded nothing itself.
        "import_ms": handler.import_ms if loaded_here else 0.0,
        "model_fn_ms": handler.model_fn_ms if loaded_here else 0.0,
        "imports": sorted(handler.imported_modules),
    }
    send_frame(sock, ready)
    return serve_requests(sock, handler, max_response_bytes)


def serve_requests(sock: socket.socket, handler: ModelHandler, max_response_bytes: int) -> int:
    """Answer ``invoke`` frames one at a time until EOF; returns the exit code."""
    tracing: WorkerTracing | None = None
    # Wait for each request in poll, not in recv: a task blocked in a unix socket's recv
    # is also woken when the gateway reads its reply (the kernel announces the freed
    # write space to every sleeper), a wake-up per request that cost the gateway an
    # interprocessor interrupt and the worker a context switch; poll's wake-ups are
    # filtered by event, so only a request (or EOF) wakes the worker.
    requests = select.poll()
    requests.register(sock, select.POLLIN)
    while True:
        requests.poll()
        frame = recv_frame(sock)
        if frame is None:
            return 0
        header, body = frame
        if header["t"] != "invoke":
            raise ProtocolError(f"unexpected message {header['t']!r}")
        request = cast("Invoke", header)
        traceparent = request.get("traceparent")
        # Nothing to do for tracing until model code has imported the tracing API.
        if traceparent and tracing is None and "opentelemetry.trace" in sys.modules:
            from workers.child.tracing import WorkerTracing

            tracing = WorkerTracing()
        before = resource.getrusage(resource.RUSAGE_SELF)
        reply, payload = answer(handler, request, body, max_response_bytes, tracing)
        after = resource.getrusage(resource.RUSAGE_SELF)
        reply["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        # ru_maxrss is in KiB on Linux: the worker's peak resident memory so far.
        reply["max_rss"] = after.ru_maxrss * 1024
        if tracing is not None:
            # Spans made before an error are kept with its answer.
            spans = tracing.drain()
            if spans:
                reply["spans"] = spans
        send_frame(sock, reply, payload)


def answer(
    handler: ModelHandler,
    header: Invoke,
    body: bytes,
    max_response_bytes: int,
    tracing: WorkerTracing | None,
) -> tuple[Result, bytes]:
    """The result frame for one invocation: the model's answer, or its error."""
    from workers.child.handler import HandlerError

    def call() -> Response:
        return handler.invoke(
            body,
            header.get("content_type"),
            header.get("accept"),
            header.get("custom_attributes"),
            header.get("id"),
        )

    traceparent = header.get("traceparent")
    try:
        response = tracing.run(traceparent, call) if tracing and traceparent else call()
    except HandlerError as exc:
        return error_result(exc.status, exc.message)
    except Exception as exc:
        # As the inference toolkit does: the handler's exception is the model's 500.
        # The traceback goes to the log, the message to the caller.
        traceback.print_exc()
        return error_result(500, f"{type(exc).__name__}: {exc}")
    if len(response.body) > max_response_bytes:
        return error_result(
            500,
            f"response of {len(response.body)} bytes is over the "
            f"{max_response_bytes} byte payload limit",
        )
    result: Result = {
        "t": "result",
        "status": 200,
        "content_type": response.content_type,
        "custom_attributes": response.custom_attributes,
    }
    return result, response.body


def run(sock: socket.socket, serve_fn: Any) -> int:
    """Run a serve function, turning a lost gateway connection into exit code 4."""
    try:
        code: int = serve_fn()
        return code
    except (OSError, ProtocolError) as exc:
        sys.stderr.write(f"worker: connection to gateway lost: {exc}\n")
        return 4
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    die_with_parent(args.parent)
    set_process_name(WORKER_NAME)
    if args.placement:
        import json

        from workers.child.limits import join_placement
        from workers.wire.messages import Placement

        join_placement(Placement.from_json(json.loads(args.placement)))
    # The gateway stops workers by closing the socket; a terminal's Ctrl-C is the gateway's
    # business, and the gateway puts workers in their own session anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    return run(sock, lambda: serve(sock, args.model_dir, args.max_response_bytes))


if __name__ == "__main__":
    sys.exit(main())
