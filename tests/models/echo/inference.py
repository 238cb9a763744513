"""Echo: answers the request body unchanged, in the content type asked for."""


def model_fn(model_dir):
    return "echo"


def transform_fn(model, body, content_type, accept):
    if accept in (None, "*/*"):
        return body, content_type or "application/octet-stream"
    return body, accept
