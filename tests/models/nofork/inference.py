"""A model that must not be shared by forking: each worker loads its own copy."""

FORK_AFTER_LOAD = False


def model_fn(model_dir):
    return "own copy"


def transform_fn(model, body, content_type, accept):
    return body, "application/octet-stream"
