"""A model that does what the request body says, to exercise every failure path.

Body (text): ``sleep:SECONDS`` answers after that long (``sleeppid:SECONDS`` answers
the pid after that long); ``raise`` raises ValueError;
``exit`` exits the process; ``kill`` SIGKILLs itself; ``hang`` never answers;
``print:TEXT`` prints TEXT to stdout and answers it; ``big:N`` answers N bytes;
``pid`` answers the worker's pid; ``env`` answers the worker's environment as JSON;
``attrs`` answers the request's CustomAttributes and sets its own on the response;
anything else is echoed.
"""

import json
import os
import signal
import sys
import threading
import time


def model_fn(model_dir):
    return {"loaded_at": time.time()}


def transform_fn(model, body, content_type, accept, context):
    text = body.decode()
    verb, _, arg = text.partition(":")
    if verb == "sleeppid":
        time.sleep(float(arg))
        return str(os.getpid()).encode(), "text/plain"
    if verb == "sleep":
        time.sleep(float(arg))
        return b"slept", "text/plain"
    if verb == "raise":
        raise ValueError("the model refused this input")
    if verb == "exit":
        sys.stdout.flush()
        os._exit(3)
    if verb == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if verb == "hang":
        threading.Event().wait()
    if verb == "print":
        print(arg, flush=True)
        return arg.encode(), "text/plain"
    if verb == "big":
        return b"x" * int(arg), "application/octet-stream"
    if verb == "env":
        return json.dumps(dict(os.environ)).encode(), "application/json"
    if verb == "attrs":
        seen = context.custom_attributes or ""
        return seen.encode(), "text/plain", f"seen={len(seen)}"
    if verb == "pid":
        return str(os.getpid()).encode(), "text/plain"
    return body, content_type or "application/octet-stream"
