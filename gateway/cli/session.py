"""What every control-plane command of ``coldbrew`` shares: its ``Session`` and how it
reports failure.

Each command is a thin client of the gateway's SageMaker API (``gateway.cli.client.call``),
so it works the same against a remote gateway. A command returns the process exit
status: 0 on success; 1 for an API error, an unreachable gateway or an endpoint that
ended Failed (with one ``coldbrew: ...`` line on ``Session.err`` saying why); 130 when
interrupted. Results go to ``Session.out``, progress to ``Session.err``.
"""

from __future__ import annotations

import functools
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TextIO
from urllib.parse import urlsplit

from gateway.cli.client import ApiError, ClientConfig

P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class Session:
    """Whom a command calls, where it writes, and how it tells time."""

    config: ClientConfig
    out: TextIO
    err: TextIO
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class CommandFailed(Exception):
    """A command cannot go on; the message says why, for the user."""


def say(session: Session, text: str) -> None:
    """Print one line of progress (or a failure) on ``session.err`` at once."""
    print(text, file=session.err, flush=True)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a gateway URL, or None when it can."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return None
    return f"the gateway URL must look like http://HOST[:PORT], got {url!r}"


def reports_errors(
    command: Callable[Concatenate[Session, P], int],
) -> Callable[Concatenate[Session, P], int]:
    """Turn a command's failures into one ``coldbrew: ...`` line and exit status 1."""

    @functools.wraps(command)
    def run(session: Session, /, *args: P.args, **kwargs: P.kwargs) -> int:
        problem = url_problem(session.config.url)
        if problem is not None:
            say(session, f"coldbrew: {problem}")
            return 1
        try:
            return command(session, *args, **kwargs)
        except ApiError as error:
            say(session, f"coldbrew: {error.code}: {error.message}")
        except CommandFailed as error:
            say(session, f"coldbrew: {error}")
        except OSError as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            say(session, f"coldbrew: cannot reach the gateway at {session.config.url}: {reason}")
        except KeyboardInterrupt:
            say(session, "coldbrew: interrupted")
            return 130
        return 1

    return run
