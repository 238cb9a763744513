"""A model whose model_fn raises, so no worker ever becomes ready."""


def model_fn(model_dir):
    raise RuntimeError("weights file is corrupt")
