"""A model whose handler makes its own span, which must join the invocation's trace."""

from opentelemetry import trace

tracer = trace.get_tracer("traced-model")


def model_fn(model_dir):
    return "traced"


def transform_fn(model, body, content_type, accept):
    with tracer.start_as_current_span("preprocess") as span:
        span.set_attribute("model.input_bytes", len(body))
    return body, "application/octet-stream"
