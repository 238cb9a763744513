"""A model whose first load fails and every later load succeeds.

The first ``model_fn`` to create the marker file ``FAIL_MARKER`` fails as
``FAIL_FIRST_LOAD`` says: ``exit`` ends the process at once (no Python exception, as a
crash in native code would), ``raise`` raises. Later loads find the marker and succeed.
"""

import os


def model_fn(model_dir):
    try:
        fd = os.open(os.environ["FAIL_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return "loaded"
    os.close(fd)
    if os.environ["FAIL_FIRST_LOAD"] == "exit":
        os._exit(9)
    raise RuntimeError("the first load fails")


def transform_fn(model, body, content_type, accept):
    return body, "application/octet-stream"
