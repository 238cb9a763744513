"""The default handlers a model gets for the functions its inference code does not define.

They follow the SageMaker inference toolkit: requests in ``application/json``, ``text/csv``
or ``application/x-npy`` decode into a numpy array, the model's ``predict`` (or the model
itself) makes the prediction, and the prediction is encoded as the ``Accept`` type asks.

numpy is imported inside the functions that need it, never when this module is imported,
so a worker whose model does not use numpy does not pay for it. Without numpy, JSON and CSV
output still work; CSV and NPY input and NPY output answer as unsupported types.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Final

import orjson

__all__ = [
    "CSV",
    "JSON",
    "NPY",
    "HandlerError",
    "default_input_fn",
    "default_output_fn",
    "default_predict_fn",
    "media_type",
]

JSON: Final = "application/json"
CSV: Final = "text/csv"
NPY: Final = "application/x-npy"
_SUPPORTED: Final = f"{JSON}, {CSV} and {NPY}"
_NPY_MAGIC: Final = b"\x93NUMPY"
_JSON_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class HandlerError(Exception):
    """An error the toolkit answers with a specific HTTP status (e.g. 415 unsupported
    content type, 406 unsupported accept, 400 malformed body). ``message`` is the body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(value: str) -> str:
    """Return the bare, lower-case media type of a Content-Type or Accept value:
    ``"Application/JSON; charset=utf-8"`` gives ``"application/json"``."""
    return value.partition(";")[0].strip().lower()


def default_input_fn(body: bytes, content_type: str) -> Any:
    """Decode a request body by its content type (parameters such as charset are ignored).

    ``application/json``: the decoded value, as a numpy array when numpy is installed.
    ``text/csv``: a 2-D float64 numpy array, one row per line. ``application/x-npy``: the
    array, never unpickling objects. Raises HandlerError 415 for any other type (or a type
    that needs numpy when it is missing) and HandlerError 400 for a body that does not decode.
    """
    kind = media_type(content_type)
    if kind == JSON:
        return _decode_json(body)
    if kind == CSV:
        return _decode_csv(body)
    if kind == NPY:
        return _decode_npy(body)
    raise HandlerError(
        415,
        f"content type {content_type} is not supported by the default input_fn, which decodes "
        f"{_SUPPORTED}; define input_fn in the inference code to accept it",
    )


def default_predict_fn(data: Any, model: Any) -> Any:
    """Return ``model.predict(data)`` when the model has a callable ``predict`` (scikit-learn,
    XGBoost...), else ``model(data)`` when the model is callable. Raises HandlerError 500
    when it is neither; exceptions of the model itself propagate."""
    predict = getattr(model, "predict", None)
    if callable(predict):
        return predict(data)
    if callable(model):
        return model(data)
    raise HandlerError(
        500,
        f"the model ({type(model).__name__}) has no predict method and is not callable, and "
        f"the inference code defines no predict_fn",
    )


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """Encode a prediction as ``accept`` asks; returns (payload, bare media type).

    ``application/json``: JSON, numpy arrays and scalars included. ``text/csv``: one line per
    row; a 1-D prediction is one value per line. ``application/x-npy``: ``numpy.save`` bytes.
    Raises HandlerError 406 for any other type (or NPY without numpy) and HandlerError 500
    when the prediction cannot be represented in the asked type.
    """
    kind = media_type(accept)
    if kind == JSON:
        return _encode_json(prediction), JSON
    if kind == CSV:
        return _encode_csv(prediction), CSV
    if kind == NPY:
        return _encode_npy(prediction), NPY
    raise HandlerError(
        406,
        f"accept {accept} is not supported by the default output_fn, which encodes "
        f"{_SUPPORTED}; define output_fn in the inference code to produce it",
    )


def _decode_json(body: bytes) -> Any:
    try:
        value = orjson.loads(body)  # also rejects bodies that are not UTF-8
    except orjson.JSONDecodeError as exc:
        raise HandlerError(400, f"the {JSON} body is not valid JSON: {exc}") from exc
    try:
        import numpy as np
    except ImportError:
        return value
    try:
        return np.asarray(value)
    except ValueError as exc:  # ragged nesting
        raise HandlerError(400, f"the {JSON} body is not an array numpy can hold: {exc}") from exc


def _decode_csv(body: bytes) -> Any:
    np = _numpy_or_unsupported(415, f"content type {CSV}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HandlerError(400, f"the {CSV} body is not UTF-8 text: {exc}") from exc
    if not text.strip():
        # numpy would only warn and return an empty array; an empty request is a client error.
        raise HandlerError(400, f"the {CSV} body is empty")
    try:
        return np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise HandlerError(400, f"the {CSV} body is not rows of numbers: {exc}") from exc


def _decode_npy(body: bytes) -> Any:
    np = _numpy_or_unsupported(415, f"content type {NPY}")
    # Checking the magic first keeps numpy.load from taking other formats (such as .npz).
    if not body.startswith(_NPY_MAGIC):
        raise HandlerError(400, f"the {NPY} body is not in the .npy format")
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise HandlerError(400, f"the {NPY} body does not load as an array: {exc}") from exc


def _encode_json(prediction: Any) -> bytes:
    try:
        return orjson.dumps(prediction, default=_to_builtin, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise HandlerError(500, f"the prediction cannot be encoded as {JSON}: {exc}") from exc


def _to_builtin(value: Any) -> Any:
    """orjson's fallback: arrays it does not take natively (non-contiguous, object dtype)
    and other array-likes (tensors) become Python values via ``tolist``/``item``."""
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


def _encode_csv(prediction: Any) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(_csv_rows(_to_plain(prediction)))
    return buffer.getvalue().encode("utf-8")


def _to_plain(value: Any) -> Any:
    convert = getattr(value, "tolist", None)
    return convert() if callable(convert) else value


def _csv_rows(value: Any) -> list[list[Any]]:
    """Rows of a scalar (one cell), a 1-D sequence (one value per line) or a 2-D one."""
    if not isinstance(value, list | tuple):
        return [[value]]
    items = [_to_plain(item) for item in value]
    nested = [isinstance(item, list | tuple) for item in items]
    if not any(nested):
        return [[item] for item in items]
    if not all(nested) or any(isinstance(cell, list | tuple) for row in items for cell in row):
        raise HandlerError(
            500, f"the prediction cannot be encoded as {CSV}: it is not a scalar, 1-D or 2-D"
        )
    return [list(row) for row in items]


def _encode_npy(prediction: Any) -> bytes:
    np = _numpy_or_unsupported(406, f"accept {NPY}")
    buffer = io.BytesIO()
    try:
        np.save(buffer, np.asarray(prediction), allow_pickle=False)
    except ValueError as exc:  # object arrays, ragged nesting
        raise HandlerError(500, f"the prediction cannot be encoded as {NPY}: {exc}") from exc
    return buffer.getvalue()


def _numpy_or_unsupported(status: int, what: str) -> Any:
    """Import numpy for a type that cannot be served without it; HandlerError(status) if
    it is not installed, because the type is then unsupported here."""
    try:
        import numpy
    except ImportError:
        raise HandlerError(
            status, f"{what} is not supported: it needs numpy, which is not installed"
        ) from None
    return numpy
