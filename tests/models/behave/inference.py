"""A model that does what the request body says, to exercise every failure path.

The body is ``VERB`` or ``VERB:ARG``; anything that is no verb is echoed back.
"""

import json
import os
import signal
import sys
import threading
import time


def model_fn(model_dir):
    return {"loaded_at": time.time()}


def sleep(arg, context):
    """Answer after ARG seconds."""
    time.sleep(float(arg))
    return b"slept", "text/plain"


def sleeppid(arg, context):
    """Answer the worker's pid after ARG seconds."""
    time.sleep(float(arg))
    return str(os.getpid()).encode(), "text/plain"


def refuse(arg, context):
    """Raise, as a model refusing its input."""
    raise ValueError("the model refused this input")


def exit_now(arg, context):
    """Exit the worker process with status 3."""
    sys.stdout.flush()
    os._exit(3)


def kill(arg, context):
    """SIGKILL the worker process."""
    os.kill(os.getpid(), signal.SIGKILL)


def hang(arg, context):
    """Never answer."""
    threading.Event().wait()


def say(arg, context):
    """Print ARG to stdout (the gateway log) and answer it."""
    print(arg, flush=True)
    return arg.encode(), "text/plain"


def big(arg, context):
    """Answer ARG bytes."""
    return b"x" * int(arg), "application/octet-stream"


def alloc(arg, context):
    """Allocate (and touch) ARG MiB of memory, then answer how much."""
    hoard = b"x" * (int(arg) * 1024 * 1024)
    return str(len(hoard)).encode(), "text/plain"


def environment(arg, context):
    """Answer the worker's environment as JSON."""
    return json.dumps(dict(os.environ)).encode(), "application/json"


def attrs(arg, context):
    """Answer the request's CustomAttributes and set the response's own."""
    seen = context.custom_attributes or ""
    return seen.encode(), "text/plain", f"seen={len(seen)}"


def pid(arg, context):
    """Answer the worker's pid."""
    return str(os.getpid()).encode(), "text/plain"


VERBS = {
    "sleep": sleep,
    "sleeppid": sleeppid,
    "raise": refuse,
    "exit": exit_now,
    "kill": kill,
    "hang": hang,
    "print": say,
    "big": big,
    "alloc": alloc,
    "env": environment,
    "attrs": attrs,
    "pid": pid,
}


def transform_fn(model, body, content_type, accept, context):
    verb, _, arg = body.decode(errors="replace").partition(":")
    action = VERBS.get(verb)
    if action is None:
        return body, content_type or "application/octet-stream"
    return action(arg, context)
