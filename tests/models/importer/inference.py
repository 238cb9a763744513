"""A model whose handler imports a module nothing else imports, to teach the zygote."""

import colorsys


def model_fn(model_dir):
    return colorsys


def transform_fn(model, body, content_type, accept):
    return body, "application/octet-stream"
