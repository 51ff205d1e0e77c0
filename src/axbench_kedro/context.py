"""Project context: a failed parameter validation keeps its structure (parameter, location, message).

Kedro 1.7 validates the ``params:`` inputs of the nodes against their type hints (pydantic models) and, on
failure, raises a ``ParameterValidationError`` that carries only a multi-line text; the pydantic errors are gone.
:class:`ProjectContext` re-runs the failed validation key by key and raises :class:`ParameterProblemsError`
instead, with one :class:`ParameterProblem` per pydantic error, so the CLI can print one line without parsing
text. Successful validation is Kedro's own, unchanged.

Registered in ``settings.py`` as ``CONTEXT_CLASS``.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from kedro.framework.context import KedroContext
from kedro.pipeline import Pipeline
from kedro.validation import (
    ModelInstantiationError,
    ParameterValidationError,
    TypeExtractor,
    instantiate_model,
)
from pydantic import ValidationError

__all__ = ["ParameterProblem", "ParameterProblemsError", "ProjectContext", "parameter_problems"]

_MISSING = object()


@dataclass(frozen=True)
class ParameterProblem:
    """One thing wrong with one parameter.

    Attributes:
        key: the parameter as nodes name it after ``params:`` (``run``, ``steering_eval``).
        loc: where inside the parameter (pydantic ``loc``; empty for the parameter as a whole).
        msg: what is wrong (pydantic ``msg``).
    """

    key: str
    loc: tuple[str | int, ...]
    msg: str

    def __str__(self) -> str:
        where = ".".join(str(part) for part in (self.key, *self.loc))
        return f"params:{where}: {self.msg}"


class ParameterProblemsError(ParameterValidationError):
    """Parameter validation failed; ``problems`` lists every error (``str`` is the one-line summary)."""

    def __init__(self, problems: list[ParameterProblem]) -> None:
        self.problems = list(problems)
        super().__init__("Parameter validation failed: " + "; ".join(map(str, self.problems)))


def _lookup(params: Mapping[str, Any], key: str) -> Any:
    """Value of a dotted parameter key (a flat key first, as Kedro does), or ``_MISSING``."""
    if key in params:
        return params[key]
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _optional_inner(tp: Any) -> tuple[bool, Any]:
    """``(allows None, the type without None)`` of a type hint."""
    if get_origin(tp) is Union or isinstance(tp, types.UnionType):
        args = get_args(tp)
        rest = [a for a in args if a is not type(None)]
        return type(None) in args, rest[0] if len(rest) == 1 else tp
    return False, tp


def _problems_of(key: str, exc: BaseException) -> list[ParameterProblem]:
    cause = exc.__cause__ if isinstance(exc, ModelInstantiationError) and exc.__cause__ is not None else exc
    if isinstance(cause, ValidationError):
        return [ParameterProblem(key, tuple(err["loc"]), err["msg"]) for err in cause.errors()]
    return [ParameterProblem(key, (), " ".join(str(cause).split()))]


def parameter_problems(
    params: Mapping[str, Any], pipelines: Mapping[str, Pipeline]
) -> list[ParameterProblem]:
    """Validate ``params`` against the typed ``params:`` inputs of ``pipelines`` the way Kedro does.

    Args:
        params: raw parameters (``config_loader["parameters"]``, runtime overrides included).
        pipelines: the pipelines whose node type hints say what each parameter must be.

    Returns:
        Every problem, in the order Kedro checks the parameters (empty when all are valid).
    """
    problems: list[ParameterProblem] = []
    for key, expected in TypeExtractor(dict(pipelines)).extract_types_from_pipelines().items():
        value = _lookup(params, key)
        if value is _MISSING:
            continue
        optional, inner = _optional_inner(expected)
        if value is None:
            if not optional:
                problems.append(ParameterProblem(key, (), "value is None but type is not Optional"))
            continue
        try:
            instantiate_model(key, value, inner)
        except Exception as exc:  # Kedro reports any failure of a parameter the same way
            problems.extend(_problems_of(key, exc))
    return problems


class ProjectContext(KedroContext):
    """``KedroContext`` whose parameter validation errors are :class:`ParameterProblemsError`."""

    def _get_validated_params(self) -> dict[str, Any]:
        try:
            return super()._get_validated_params()
        except ParameterValidationError as exc:
            if isinstance(exc, ParameterProblemsError):
                raise
            problems = self._parameter_problems()
            if not problems:
                raise
            raise ParameterProblemsError(problems) from exc

    def _parameter_problems(self) -> list[ParameterProblem]:
        """The failed validation again, with structure (same parameters, same pipelines as Kedro's)."""
        from kedro.framework.project import pipelines as project_pipelines

        names = self._pipelines_to_validate
        selected = dict(project_pipelines) if names is None else {n: project_pipelines[n] for n in names}
        return parameter_problems(self.config_loader["parameters"], selected)
