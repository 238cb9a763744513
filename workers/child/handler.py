"""A model's inference code, loaded the SageMaker inference-toolkit way, answering requests.

This runs inside a worker process. ``ModelHandler.load`` imports the user's module (by
default ``inference.py``, looked up in ``<model_dir>/code`` then ``<model_dir>``), calls its
``model_fn`` once, and binds its handler functions to the loaded model; ``invoke`` turns
one request into one response with them. Functions the module does not define fall back to
the defaults in ``workers.child.codecs``.

Handler functions, as the toolkit defines them (each may take one extra trailing
``context`` parameter, detected from its signature):

- ``model_fn(model_dir)`` returns the model; required.
- ``input_fn(body, content_type)``, ``predict_fn(data, model)``, ``output_fn(prediction,
  accept)``; or instead of those three, ``transform_fn(model, body, content_type, accept)``.
- optional ``pre_model_fn(model_dir)`` before ``model_fn`` and ``model_warmup_fn(model_dir,
  model)`` after it.

``model_dir`` is passed to user functions as a ``str``, as the toolkit does, so code that
joins paths with ``+`` keeps working.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Final

from workers.child.codecs import (
    JSON,
    HandlerError,
    default_input_fn,
    default_output_fn,
    default_predict_fn,
    media_type,
)

__all__ = ["HandlerContext", "HandlerError", "ModelHandler", "Response", "find_program"]

DEFAULT_PROGRAM: Final = "inference.py"
# The toolkit's model server assumes JSON for a request without a Content-Type (boto3 sends
# none unless asked); the handlers then see "application/json" rather than None.
DEFAULT_CONTENT_TYPE: Final = JSON
DEFAULT_ACCEPT_ENV: Final = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
ANY_MEDIA: Final = "*/*"

# Positional arguments of each handler function, without the optional trailing context.
_ARITY: Final[Mapping[str, int]] = MappingProxyType(
    {
        "pre_model_fn": 1,
        "model_fn": 1,
        "model_warmup_fn": 2,
        "input_fn": 2,
        "predict_fn": 2,
        "output_fn": 2,
        "transform_fn": 4,
    }
)
_PIPELINE: Final = ("input_fn", "predict_fn", "output_fn")


@dataclass(frozen=True, slots=True)
class Response:
    """A successful answer: the payload, its content type, and the CustomAttributes the
    model sets on its response (None: the header is left out)."""

    body: bytes
    content_type: str
    custom_attributes: str | None = None


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler function with a trailing ``context`` parameter receives.

    ``request_id`` and ``custom_attributes`` are None while the model loads.
    """

    model_dir: str
    request_id: str | None = None
    custom_attributes: str | None = None


@dataclass(frozen=True, slots=True)
class _Hook:
    """One handler function and whether it takes the trailing context."""

    fn: Callable[..., Any]
    with_context: bool

    def call(self, context: HandlerContext, *args: Any) -> Any:
        if self.with_context:
            return self.fn(*args, context)
        return self.fn(*args)


_DEFAULT_HOOKS: Final[Mapping[str, _Hook]] = MappingProxyType(
    {
        "input_fn": _Hook(default_input_fn, with_context=False),
        "predict_fn": _Hook(default_predict_fn, with_context=False),
        "output_fn": _Hook(default_output_fn, with_context=False),
    }
)


class ModelHandler:
    """User handlers bound to one loaded model.

    Attributes: ``model`` (what ``model_fn`` returned), ``model_dir``, ``module_path`` (the
    user module, None when there is none), ``imported_modules`` (top-level names of the
    modules first imported while loading, for pre-importing them elsewhere) and
    ``fork_after_load`` (False when the module sets ``FORK_AFTER_LOAD = False``: its model
    must not be loaded once and shared with forked workers).
    """

    __slots__ = (
        "_default_accept",
        "_input",
        "_output",
        "_predict",
        "_transform",
        "fork_after_load",
        "import_ms",
        "imported_modules",
        "model",
        "model_dir",
        "model_fn_ms",
        "module_path",
    )

    def __init__(
        self,
        *,
        model: Any,
        model_dir: Path,
        module_path: Path | None,
        hooks: Mapping[str, _Hook],
        default_accept: str,
        imported_modules: frozenset[str],
        fork_after_load: bool = True,
    ) -> None:
        """Bind loaded hooks; use ``load`` to make one."""
        self.fork_after_load = fork_after_load
        self.import_ms = 0.0
        self.model_fn_ms = 0.0
        self.model = model
        self.model_dir = model_dir
        self.module_path = module_path
        self.imported_modules = imported_modules
        self._default_accept = default_accept
        self._transform = hooks.get("transform_fn")
        self._input = hooks.get("input_fn", _DEFAULT_HOOKS["input_fn"])
        self._predict = hooks.get("predict_fn", _DEFAULT_HOOKS["predict_fn"])
        self._output = hooks.get("output_fn", _DEFAULT_HOOKS["output_fn"])

    @classmethod
    def load(cls, model_dir: Path, program: str | None = None) -> ModelHandler:
        """Import the inference code of ``model_dir`` and load the model with it.

        ``program`` is SAGEMAKER_PROGRAM (default ``inference.py``). The module's directory
        goes first on ``sys.path`` (so its sibling imports work) and stays there. The
        default Accept is read from SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT here, once.

        Raises NotImplementedError when no ``model_fn`` is defined (including when there is
        no module at all), ValueError when ``transform_fn`` is mixed with input/predict/
        output functions or ``program`` is not a plain file name, TypeError when a handler
        is not callable or cannot take its arguments; whatever the user's module or its
        ``pre_model_fn``/``model_fn``/``model_warmup_fn`` raise propagates unchanged.
        """
        model_dir = Path(model_dir)
        started = time.perf_counter()
        before = frozenset(sys.modules)
        module_path = find_program(model_dir, program)
        module_name = None
        hooks: dict[str, _Hook] = {}
        fork_after_load = True
        if module_path is None:
            where = f"{model_dir} (it has no {_file_name(program)} in code/ or at the top)"
        else:
            where = str(module_path)
            module_name, module = _import_program(module_path)
            hooks = _user_hooks(module, where)
            fork_after_load = getattr(module, "FORK_AFTER_LOAD", True) is not False
        _check_consistent(hooks, where)
        if "model_fn" not in hooks:
            raise NotImplementedError(
                f"model_fn is not defined in {where}; the inference code must define "
                f"model_fn(model_dir) that loads the model and returns it"
            )

        context = HandlerContext(model_dir=str(model_dir))
        imported_at = time.perf_counter()
        if "pre_model_fn" in hooks:
            hooks["pre_model_fn"].call(context, context.model_dir)
        model = hooks["model_fn"].call(context, context.model_dir)
        if "model_warmup_fn" in hooks:
            hooks["model_warmup_fn"].call(context, context.model_dir, model)

        imported = _imported_since(before, model_dir, module_name)
        loaded_at = time.perf_counter()
        handler = cls(
            model=model,
            model_dir=model_dir,
            module_path=module_path,
            hooks=hooks,
            default_accept=os.environ.get(DEFAULT_ACCEPT_ENV) or JSON,
            imported_modules=frozenset(imported),
            fork_after_load=fork_after_load,
        )
        # Where a cold start's time went: importing the inference code, then model_fn.
        handler.import_ms = (imported_at - started) * 1000.0
        handler.model_fn_ms = (loaded_at - imported_at) * 1000.0
        return handler

    def invoke(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        custom_attributes: str | None = None,
        request_id: str | None = None,
    ) -> Response:
        """Answer one request: ``transform_fn``, or ``input_fn`` -> ``predict_fn`` ->
        ``output_fn``.

        A missing content type is taken as ``application/json``; a missing, empty or
        ``*/*`` accept as the default Accept. The output may be bytes, str (UTF-8 encoded),
        ``(payload, content_type)`` or ``(payload, content_type, custom_attributes)``;
        without a content type the response carries the accept. Raises HandlerError from
        the default handlers, TypeError for output of another shape;
        exceptions of the user's functions propagate unchanged.
        """
        content_type = content_type or DEFAULT_CONTENT_TYPE
        if not accept or media_type(accept) == ANY_MEDIA:
            accept = self._default_accept
        context = HandlerContext(str(self.model_dir), request_id, custom_attributes)
        if self._transform is not None:
            result = self._transform.call(context, self.model, body, content_type, accept)
        else:
            data = self._input.call(context, body, content_type)
            prediction = self._predict.call(context, data, self.model)
            result = self._output.call(context, prediction, accept)
        return _response(result, accept)


def _imported_since(
    before: frozenset[str], model_dir: Path, program_module: str | None
) -> set[str]:
    """Modules imported since ``before`` that a zygote may pre-import: by full dotted name
    (so their submodules need not be imported again after a fork), and never the model's
    own code — a zygote importing a model's sibling module by name could find an
    installed package of the same name instead."""
    root = model_dir.resolve()
    names = set()
    for name in sys.modules.keys() - before:
        if name == program_module or name.startswith("_coldbrew_program_"):
            continue
        module = sys.modules.get(name)
        # Aliases (``__mp_main__``) and modules that extensions register under a name of
        # their own (Cython's shared ``_cython_3_x``) cannot be imported by that name.
        spec = getattr(module, "__spec__", None)
        if spec is None or spec.name != name:
            continue
        location = getattr(module, "__file__", None)
        if location and Path(location).resolve().is_relative_to(root):
            continue
        names.add(name)
    return names


def find_program(model_dir: Path, program: str | None = None) -> Path | None:
    """Return the user module file for SAGEMAKER_PROGRAM ``program`` (default
    ``inference.py``; a missing ``.py`` is added): ``model_dir/code/`` first, then
    ``model_dir/``. None when neither has it. Raises ValueError when ``program`` is not a
    plain file name."""
    name = _file_name(program)
    if "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(
            f"SAGEMAKER_PROGRAM must name a module file in code/ or the model directory, "
            f"got {program!r}"
        )
    for folder in (model_dir / "code", model_dir):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _file_name(program: str | None) -> str:
    stem = program or DEFAULT_PROGRAM
    stem = stem.removesuffix(".py")
    return f"{stem}.py"


def _import_program(path: Path) -> tuple[str, ModuleType]:
    """Import ``path`` as a new module under a private name; returns (name, module).

    The module is registered in ``sys.modules`` (dataclasses and pickle look their classes'
    modules up there) and removed again if executing it raises. The private name means a
    second load of the same file, or a user module called like a library, never collides.
    """
    name = f"_coldbrew_program_{path.stem}_{os.urandom(6).hex()}"
    folder = str(path.parent)
    if not sys.path or sys.path[0] != folder:
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return name, module


def _user_hooks(module: ModuleType, where: str) -> dict[str, _Hook]:
    """The handler functions ``module`` defines, each checked for its arguments."""
    hooks = {}
    for name, arity in _ARITY.items():
        fn = getattr(module, name, None)
        if fn is None:
            continue
        if not callable(fn):
            raise TypeError(f"{name} in {where} is not callable")
        hooks[name] = _Hook(fn, _takes_context(fn, name, arity, where))
    return hooks


def _check_consistent(hooks: Mapping[str, _Hook], where: str) -> None:
    mixed = [name for name in _PIPELINE if name in hooks]
    if "transform_fn" in hooks and mixed:
        raise ValueError(
            f"{where} defines transform_fn together with {', '.join(mixed)}; define either "
            f"transform_fn or input_fn/predict_fn/output_fn"
        )


def _takes_context(fn: Callable[..., Any], name: str, arity: int, where: str) -> bool:
    """True when ``fn`` has a positional parameter beyond its ``arity`` for the context.

    Raises TypeError when ``fn`` cannot be called with ``arity`` (or ``arity + 1``)
    positional arguments.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        # Some compiled callables publish no signature; they get the plain arguments.
        return False
    positional = required = 0
    variadic = False
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            variadic = True
        elif parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
            required += parameter.default is parameter.empty
    if required > arity + 1 or (positional < arity and not variadic):
        raise TypeError(
            f"{name} in {where} must take {arity} positional argument(s), or {arity + 1} "
            f"with a trailing context; its signature is {name}{signature}"
        )
    return positional > arity


def _response(result: Any, accept: str) -> Response:
    """Normalise what output_fn/transform_fn returned into a Response."""
    content_type: Any = None
    custom_attributes: Any = None
    if isinstance(result, tuple):
        if len(result) == 3:
            result, content_type, custom_attributes = result
        elif len(result) == 2:
            result, content_type = result
        else:
            raise TypeError(
                f"the handler returned a tuple of {len(result)} items; expected "
                f"(payload, content_type) or (payload, content_type, custom_attributes)"
            )
    if isinstance(result, str):
        body = result.encode("utf-8")
    elif isinstance(result, bytes | bytearray | memoryview):
        body = bytes(result)
    else:
        raise TypeError(
            f"the handler returned {type(result).__name__}; expected bytes, str or "
            f"(payload, content_type)"
        )
    if content_type is not None and not isinstance(content_type, str):
        raise TypeError(
            f"the handler returned a content type of type {type(content_type).__name__}; "
            f"expected str"
        )
    if custom_attributes is not None and not isinstance(custom_attributes, str):
        raise TypeError(
            f"the handler returned custom attributes of type {type(custom_attributes).__name__}; "
            f"expected str"
        )
    return Response(body, content_type or accept, custom_attributes)
