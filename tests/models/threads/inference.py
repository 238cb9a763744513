"""A model whose loading starts a thread, so a zygote holding it could not fork safely."""

import threading


def model_fn(model_dir):
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
    return stop


def transform_fn(model, body, content_type, accept):
    return body, "application/octet-stream"
