"""A model that loads in a worker but crashes hard (no Python exception) while loading in
a model zygote, to exercise how a failed zygote start is reported."""

import os
import sys


def model_fn(model_dir):
    with open("/proc/self/comm") as comm:
        if comm.read().strip() == "cb-model-zygote":
            print("zygotecrash: giving up inside the model zygote", file=sys.stderr, flush=True)
            os._exit(7)
    return "loaded"


def transform_fn(model, body, content_type, accept):
    return body, "application/octet-stream"
