"""A model whose handler makes its own span, which must join the invocation's trace."""

from opentelemetry import trace

tracer = trace.get_tracer("traced-model")


def model_fn(model_dir):
    return "traced"


def transform_fn(model, body, content_type, accept):
    # "spans:N" asks for N spans (one per step, as a generation loop might make).
    if body.startswith(b"spans:"):
        for step in range(int(body[len(b"spans:") :])):
            with tracer.start_as_current_span("step") as span:
                span.set_attribute("model.step", step)
        return body, "application/octet-stream"
    with tracer.start_as_current_span("preprocess") as span:
        span.set_attribute("model.input_bytes", len(body))
    return body, "application/octet-stream"
