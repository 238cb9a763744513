"""A model that takes LOAD_SECONDS (from its Environment) to load, then echoes."""

import os
import time


def model_fn(model_dir):
    time.sleep(float(os.environ.get("LOAD_SECONDS", "0")))
    return "loaded"


def transform_fn(model, body, content_type, accept):
    return body, content_type or "application/octet-stream"
