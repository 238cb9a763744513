"""Entry point of a worker process: ``python -u -m workers.child --fd N --parent PID ...``.

The worker's life, as the gateway sees it: start, load the model, send ``ready`` (or
``failed``), then answer ``invoke`` frames one at a time until the gateway closes the
socket. Model output on stdout/stderr goes to a pipe the gateway logs; the protocol runs on
its own socket, so nothing a model prints can corrupt it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from workers.protocol import ProtocolError, recv_frame, send_frame

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when the gateway dies, even by SIGKILL.

    The check of ``getppid`` afterwards closes the race where the gateway died before the
    request took effect.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(70)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="workers.child")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--max-response-bytes", type=int, required=True)
    return parser.parse_args(argv)


def error_result(status: int, message: str) -> tuple[dict[str, Any], bytes]:
    header = {"t": "result", "status": status, "content_type": "text/plain"}
    return header, message.encode("utf-8", "replace")


def serve(sock: socket.socket, model_dir: Path, max_response_bytes: int) -> int:
    """Load the model, handshake, and serve until EOF. Returns the exit code."""
    from workers.handler import HandlerError, ModelHandler

    started = time.perf_counter()
    try:
        handler = ModelHandler.load(model_dir, os.environ.get("SAGEMAKER_PROGRAM"))
    except BaseException as exc:  # any failure to load, SystemExit included, is reported
        detail = traceback.format_exc()
        sys.stderr.write(detail)
        message = f"{type(exc).__name__}: {exc}"
        send_frame(sock, {"t": "failed", "message": message}, detail.encode())
        return 3
    load_ms = (time.perf_counter() - started) * 1000.0
    send_frame(sock, {"t": "ready", "pid": os.getpid(), "load_ms": load_ms})

    while True:
        frame = recv_frame(sock)
        if frame is None:
            return 0
        header, body = frame
        if header["t"] != "invoke":
            raise ProtocolError(f"unexpected message {header['t']!r}")
        try:
            response = handler.invoke(
                body,
                header.get("content_type"),
                header.get("accept"),
                header.get("custom_attributes"),
                header.get("id"),
            )
        except HandlerError as exc:
            reply = error_result(exc.status, exc.message)
        except Exception as exc:
            # As the inference toolkit does: the handler's exception is the model's 500.
            # The traceback goes to the log, the message to the caller.
            traceback.print_exc()
            reply = error_result(500, f"{type(exc).__name__}: {exc}")
        else:
            if len(response.body) > max_response_bytes:
                reply = error_result(
                    500,
                    f"response of {len(response.body)} bytes is over the "
                    f"{max_response_bytes} byte payload limit",
                )
            else:
                header = {
                    "t": "result",
                    "status": 200,
                    "content_type": response.content_type,
                    "custom_attributes": response.custom_attributes,
                }
                reply = header, response.body
        send_frame(sock, *reply)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    die_with_parent(args.parent)
    # The gateway stops workers by closing the socket; a terminal's Ctrl-C is the gateway's
    # business, and the gateway puts workers in their own session anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    try:
        return serve(sock, args.model_dir, args.max_response_bytes)
    except (OSError, ProtocolError) as exc:
        sys.stderr.write(f"worker: connection to gateway lost: {exc}\n")
        return 4
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
