"""Echo that names its worker: answers the request body unchanged, with the worker's pid in
the response's CustomAttributes (``worker-pid=PID``), so a client can tell which process
served it at no extra cost over a plain echo."""

import os


def model_fn(model_dir):
    return "echo"


def transform_fn(model, body, content_type, accept):
    return body, content_type or "application/octet-stream", f"worker-pid={os.getpid()}"
