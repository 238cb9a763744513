"""ModelHandler and the default codecs, with real model directories written per test."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from workers.child.codecs import (
    HandlerError,
    default_input_fn,
    default_output_fn,
    default_predict_fn,
)
from workers.child.handler import HandlerContext, ModelHandler, Response


@pytest.fixture(autouse=True)
def _isolate_imports(tmp_path: Path) -> Iterator[None]:
    """Each test's model code gets its own sys.path entries and sibling modules."""
    path_before = list(sys.path)
    yield
    sys.path[:] = path_before
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if origin.startswith(str(tmp_path)):
            del sys.modules[name]


def write(model_dir: Path, relative: str, source: str) -> Path:
    """Write dedented ``source`` to ``model_dir/relative``."""
    path = model_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


FULL_HANDLER = """
    import json

    def model_fn(model_dir):
        with open(model_dir + "/factor.txt") as f:
            return int(f.read())

    def input_fn(body, content_type):
        assert content_type == "application/json", content_type
        return json.loads(body)

    def predict_fn(data, model):
        return [x * model for x in data]

    def output_fn(prediction, accept):
        return json.dumps({"out": prediction, "accept": accept}), "application/vnd.test+json"
"""


def test_full_four_function_handler_in_code_dir(tmp_path: Path) -> None:
    """model/input/predict/output functions in code/inference.py serve a request."""
    (tmp_path / "factor.txt").write_text("3")
    path = write(tmp_path, "code/inference.py", FULL_HANDLER)

    handler = ModelHandler.load(tmp_path)
    response = handler.invoke(b"[1, 2]", "application/json", "application/json")

    assert handler.module_path == path
    assert handler.model == 3
    assert response.content_type == "application/vnd.test+json"
    assert orjson.loads(response.body) == {"out": [3, 6], "accept": "application/json"}


def test_transform_fn_handler_at_top_level(tmp_path: Path) -> None:
    """transform_fn in model_dir/inference.py gets (model, body, content_type, accept)."""
    write(
        tmp_path,
        "inference.py",
        """
        def model_fn(model_dir):
            return "M"

        def transform_fn(model, body, content_type, accept):
            return f"{model}|{body.decode()}|{content_type}|{accept}"
        """,
    )

    response = ModelHandler.load(tmp_path).invoke(b"hi", "text/plain", "text/plain")

    assert response == Response(b"M|hi|text/plain|text/plain", "text/plain")


def test_code_dir_is_preferred_over_top_level(tmp_path: Path) -> None:
    """With inference.py in both places, the one in code/ is loaded."""
    write(tmp_path, "inference.py", "def model_fn(model_dir):\n    return 'top'\n")
    write(tmp_path, "code/inference.py", "def model_fn(model_dir):\n    return 'code'\n")

    assert ModelHandler.load(tmp_path).model == "code"


def test_transform_fn_mixed_with_input_fn_is_rejected(tmp_path: Path) -> None:
    """Defining transform_fn and input_fn together is a ValueError, before model_fn runs."""
    write(
        tmp_path,
        "code/inference.py",
        """
        def model_fn(model_dir):
            raise AssertionError("model_fn must not run")

        def input_fn(body, content_type):
            return body

        def transform_fn(model, body, content_type, accept):
            return body
        """,
    )

    with pytest.raises(ValueError, match="transform_fn together with input_fn"):
        ModelHandler.load(tmp_path)


def test_program_names_another_module(tmp_path: Path) -> None:
    """program="serve.py" (SAGEMAKER_PROGRAM) loads code/serve.py, not inference.py."""
    write(tmp_path, "code/inference.py", "def model_fn(model_dir):\n    return 'wrong'\n")
    write(tmp_path, "code/serve.py", "def model_fn(model_dir):\n    return 'serve'\n")

    assert ModelHandler.load(tmp_path, program="serve.py").model == "serve"
    assert ModelHandler.load(tmp_path, program="serve").model == "serve"


def test_program_must_be_a_plain_file_name(tmp_path: Path) -> None:
    """A program name with a path in it is refused rather than looked up outside the dir."""
    with pytest.raises(ValueError, match="SAGEMAKER_PROGRAM"):
        ModelHandler.load(tmp_path, program="../elsewhere.py")


def test_sibling_module_import_works(tmp_path: Path) -> None:
    """The handler can import a module that sits beside it in code/."""
    write(tmp_path, "code/siblinghelper.py", "def double(x):\n    return 2 * x\n")
    write(
        tmp_path,
        "code/inference.py",
        """
        from siblinghelper import double

        def model_fn(model_dir):
            return double

        def transform_fn(model, body, content_type, accept):
            return str(model(int(body)))
        """,
    )

    response = ModelHandler.load(tmp_path).invoke(b"21", "text/plain", "text/plain")

    assert response.body == b"42"


def test_trailing_context_parameter_is_passed(tmp_path: Path) -> None:
    """Handlers with a trailing context get one, with the request id and custom attributes."""
    write(
        tmp_path,
        "code/inference.py",
        """
        def model_fn(model_dir, context):
            return {"load_request_id": context.request_id, "dir": context.model_dir}

        def input_fn(body, content_type, context):
            return body.decode()

        def predict_fn(data, model):
            return data

        def output_fn(prediction, accept, context):
            return f"{prediction}|{context.request_id}|{context.custom_attributes}"
        """,
    )

    handler = ModelHandler.load(tmp_path)
    response = handler.invoke(b"x", None, None, custom_attributes="a=1", request_id="req-7")

    assert handler.model == {"load_request_id": None, "dir": str(tmp_path)}
    assert response.body == b"x|req-7|a=1"


def test_context_is_a_handler_context(tmp_path: Path) -> None:
    """The context object a transform_fn receives is a HandlerContext for this model dir."""
    write(
        tmp_path,
        "code/inference.py",
        """
        def model_fn(model_dir):
            return []

        def transform_fn(model, body, content_type, accept, context):
            model.append(context)
            return b""
        """,
    )
    handler = ModelHandler.load(tmp_path)

    handler.invoke(b"", "application/json", None, request_id="r1")

    assert handler.model == [HandlerContext(str(tmp_path), "r1", None)]


def test_pre_model_and_warmup_functions_run_around_model_fn(tmp_path: Path) -> None:
    """pre_model_fn runs before model_fn and model_warmup_fn after it, with the model."""
    write(
        tmp_path,
        "code/inference.py",
        """
        calls = []

        def pre_model_fn(model_dir):
            calls.append("pre")

        def model_fn(model_dir):
            calls.append("model")
            return calls

        def model_warmup_fn(model_dir, model):
            model.append("warmup")
        """,
    )

    assert ModelHandler.load(tmp_path).model == ["pre", "model", "warmup"]


def test_handler_with_wrong_arity_is_rejected(tmp_path: Path) -> None:
    """An input_fn that takes a single argument fails the load with a TypeError naming it."""
    write(
        tmp_path,
        "code/inference.py",
        "def model_fn(model_dir):\n    return 1\n\ndef input_fn(body):\n    return body\n",
    )

    with pytest.raises(TypeError, match="input_fn"):
        ModelHandler.load(tmp_path)


MODEL_FN_ONLY = "def model_fn(model_dir):\n    return lambda data: data * 2\n"


def test_defaults_json_in_and_out_with_a_callable_model(tmp_path: Path) -> None:
    """JSON is decoded to an array, the callable model is applied, the result is JSON."""
    write(tmp_path, "code/inference.py", MODEL_FN_ONLY)

    response = ModelHandler.load(tmp_path).invoke(
        b"[[1, 2], [3, 4.5]]", "application/json; charset=utf-8", "application/json"
    )

    assert response.content_type == "application/json"
    assert orjson.loads(response.body) == [[2, 4], [6, 9.0]]


def test_defaults_csv_in_and_out(tmp_path: Path) -> None:
    """CSV decodes to a 2-D float array (one row too) and encodes back one row per line."""
    write(tmp_path, "code/inference.py", MODEL_FN_ONLY)
    handler = ModelHandler.load(tmp_path)

    many = handler.invoke(b"1,2\n3,4\n", "text/csv", "text/csv")
    one = handler.invoke(b"1.5,2", "text/csv", "text/csv")

    assert many == Response(b"2.0,4.0\n6.0,8.0\n", "text/csv")
    assert one == Response(b"3.0,4.0\n", "text/csv")


def test_defaults_npy_round_trip(tmp_path: Path) -> None:
    """An .npy request decodes to the array and the prediction comes back as .npy."""
    write(tmp_path, "code/inference.py", MODEL_FN_ONLY)
    sent = np.arange(6, dtype=np.float32).reshape(2, 3)
    buffer = io.BytesIO()
    np.save(buffer, sent)

    response = ModelHandler.load(tmp_path).invoke(
        buffer.getvalue(), "application/x-npy", "application/x-npy"
    )
    received = np.load(io.BytesIO(response.body), allow_pickle=False)

    assert response.content_type == "application/x-npy"
    assert received.dtype == np.float32
    np.testing.assert_array_equal(received, sent * 2)


def test_defaults_serve_a_scikit_learn_model(tmp_path: Path) -> None:
    """A joblib-pickled LogisticRegression with only model_fn answers class indices as JSON."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    features = np.array([[0.0, 0.0], [0.2, 0.1], [3.0, 3.0], [3.2, 2.9]])
    classes = np.array([0, 0, 1, 1])
    joblib.dump(LogisticRegression().fit(features, classes), tmp_path / "model.joblib")
    write(
        tmp_path,
        "code/inference.py",
        """
        import os
        import joblib

        def model_fn(model_dir):
            return joblib.load(os.path.join(model_dir, "model.joblib"))
        """,
    )

    response = ModelHandler.load(tmp_path).invoke(b"[[0.1, 0.0], [3.1, 3.0]]", None, None)

    assert response.content_type == "application/json"
    assert orjson.loads(response.body) == [0, 1]


@pytest.mark.parametrize("accept", [None, "", "*/*"])
def test_missing_or_any_accept_defaults_to_json(tmp_path: Path, accept: str | None) -> None:
    """A missing, empty or */* Accept gives application/json."""
    write(tmp_path, "code/inference.py", MODEL_FN_ONLY)

    response = ModelHandler.load(tmp_path).invoke(b"[1]", "application/json", accept)

    assert response == Response(b"[2]", "application/json")


def test_default_accept_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT replaces application/json for */* requests."""
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
    write(tmp_path, "code/inference.py", MODEL_FN_ONLY)

    response = ModelHandler.load(tmp_path).invoke(b"[1, 2]", "application/json", "*/*")

    assert response == Response(b"2\n4\n", "text/csv")


def test_unsupported_content_type_is_415(tmp_path: Path) -> None:
    """The default input_fn answers an unknown content type with HandlerError 415."""
    write(tmp_path, "code/inference.py", MODEL_FN_ONLY)

    with pytest.raises(HandlerError, match="content type text/plain is not supported") as info:
        ModelHandler.load(tmp_path).invoke(b"hello", "text/plain", None)

    assert info.value.status == 415


def test_unsupported_accept_is_406(tmp_path: Path) -> None:
    """The default output_fn answers an unknown accept with HandlerError 406."""
    write(tmp_path, "code/inference.py", MODEL_FN_ONLY)

    with pytest.raises(HandlerError, match="accept text/html is not supported") as info:
        ModelHandler.load(tmp_path).invoke(b"[1]", "application/json", "text/html")

    assert info.value.status == 406


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[1, 2", "application/json"),
        (b"[[1], [2, 3]]", "application/json"),
        (b"1,a\n", "text/csv"),
        (b"", "text/csv"),
        (b"not npy", "application/x-npy"),
    ],
)
def test_malformed_bodies_are_400(body: bytes, content_type: str) -> None:
    """Bodies that do not decode as their content type are HandlerError 400."""
    with pytest.raises(HandlerError) as info:
        default_input_fn(body, content_type)

    assert info.value.status == 400
    assert content_type in info.value.message


def test_pickled_npy_is_refused() -> None:
    """An object-dtype .npy (which would need unpickling) is refused with 400."""
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)

    with pytest.raises(HandlerError) as info:
        default_input_fn(buffer.getvalue(), "application/x-npy")

    assert info.value.status == 400


def test_missing_model_fn_is_a_clear_error(tmp_path: Path) -> None:
    """A module without model_fn fails the load with NotImplementedError naming model_fn."""
    path = write(tmp_path, "code/inference.py", "def predict_fn(data, model):\n    return data\n")

    with pytest.raises(NotImplementedError, match="model_fn is not defined") as info:
        ModelHandler.load(tmp_path)

    assert str(path) in str(info.value)


def test_missing_module_is_a_clear_error(tmp_path: Path) -> None:
    """With no inference module at all, the load fails saying model_fn is not defined."""
    with pytest.raises(NotImplementedError, match=r"model_fn is not defined.*inference\.py"):
        ModelHandler.load(tmp_path)


def test_user_exception_propagates_unchanged(tmp_path: Path) -> None:
    """An exception raised by predict_fn reaches the caller as itself."""
    write(
        tmp_path,
        "code/inference.py",
        """
        class ModelBroke(Exception):
            pass

        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            raise ModelBroke("boom")
        """,
    )

    with pytest.raises(Exception, match="boom") as info:
        ModelHandler.load(tmp_path).invoke(b"[1]", "application/json", None)

    assert type(info.value).__name__ == "ModelBroke"


def test_imported_modules_records_the_handlers_imports(tmp_path: Path) -> None:
    """imported_modules names, by full dotted name, the installed modules the handler
    imported during load, so a zygote can pre-import them; the model's own modules are
    left out (a zygote could find an installed package of the same name instead)."""
    write(tmp_path, "code/mylib.py", "VALUE = 1\n")
    write(
        tmp_path,
        "code/inference.py",
        "import mylib\nimport email.mime.audio\n\n"
        "def model_fn(model_dir):\n    return mylib.VALUE\n",
    )
    # Load in a fresh interpreter: in this one the module may have been imported already.
    script = (
        "import sys; from pathlib import Path; from workers.child.handler import ModelHandler; "
        f"h = ModelHandler.load(Path({str(tmp_path)!r})); print(sorted(h.imported_modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    imported = set(ast.literal_eval(output.strip().splitlines()[-1]))

    assert {"email.mime", "email.mime.audio"} <= imported
    assert "mylib" not in imported
    assert not any(name.startswith("_coldbrew_program") for name in imported)

    handler = ModelHandler.load(tmp_path)
    assert "mylib" not in handler.imported_modules
    assert not any(name.startswith("_coldbrew_program") for name in handler.imported_modules)


def test_output_of_an_unexpected_type_is_a_type_error(tmp_path: Path) -> None:
    """An output_fn returning something that is not bytes/str/tuple raises TypeError."""
    write(
        tmp_path,
        "code/inference.py",
        "def model_fn(model_dir):\n    return 0\n\n"
        "def predict_fn(data, model):\n    return data\n\n"
        "def output_fn(prediction, accept):\n    return 12\n",
    )

    with pytest.raises(TypeError, match="returned int"):
        ModelHandler.load(tmp_path).invoke(b"[1]", "application/json", None)


def test_default_predict_prefers_predict_method() -> None:
    """default_predict_fn calls model.predict when present, else the model, else 500."""

    class WithPredict:
        def predict(self, data: int) -> str:
            return f"predict {data}"

        def __call__(self, data: int) -> str:
            return "called"

    assert default_predict_fn(1, WithPredict()) == "predict 1"
    assert default_predict_fn(2, lambda data: data + 1) == 3
    with pytest.raises(HandlerError) as info:
        default_predict_fn(1, object())
    assert info.value.status == 500


def test_default_output_encodes_numpy_values() -> None:
    """Numpy scalars, non-contiguous and 1-D arrays encode to JSON and CSV."""
    matrix = np.arange(6).reshape(2, 3)

    assert default_output_fn(np.float32(1.5), "application/json") == (b"1.5", "application/json")
    assert default_output_fn(matrix.T, "application/json")[0] == b"[[0,3],[1,4],[2,5]]"
    assert default_output_fn({"p": np.int64(3)}, "application/json")[0] == b'{"p":3}'
    assert default_output_fn(np.array([1, 2]), "text/csv") == (b"1\n2\n", "text/csv")
    assert default_output_fn(7, "text/csv")[0] == b"7\n"


def test_importing_handler_modules_does_not_import_numpy() -> None:
    """The handler and codecs modules leave numpy unimported, so workers start fast."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, workers.child.handler, workers.child.codecs; "
            "assert 'numpy' not in sys.modules, 'numpy was imported'",
        ],
        check=True,
        timeout=30,
    )


def test_defaults_without_numpy() -> None:
    """Without numpy, JSON decodes to plain values and encodes back; CSV input is a 415."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["numpy"] = None  # makes "import numpy" fail as if it were not installed
        from workers.child.codecs import HandlerError, default_input_fn, default_output_fn

        assert default_input_fn(b'{"a": [1, 2]}', "application/json") == {"a": [1, 2]}
        assert default_output_fn([[1, 2]], "text/csv") == (b"1,2\\n", "text/csv")
        try:
            default_input_fn(b"1,2", "text/csv")
        except HandlerError as exc:
            assert exc.status == 415 and "numpy" in exc.message, exc.message
        else:
            raise AssertionError("text/csv decoded without numpy")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
