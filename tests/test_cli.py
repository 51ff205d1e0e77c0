"""The project CLI turns configuration mistakes into one readable line."""

from __future__ import annotations

import pytest
from kedro.pipeline import node, pipeline
from kedro.validation import ParameterValidationError
from pydantic import ValidationError

from axbench_kedro.cli import _user_error, summarise_error
from axbench_kedro.config.common import RunSettings
from axbench_kedro.context import ParameterProblem, ParameterProblemsError, parameter_problems
from axbench_kedro.errors import AxbenchConfigError


def _uses_run(run: RunSettings) -> int:
    return run.layer


def _uses_optional_run(run: RunSettings | None) -> int:
    return 0 if run is None else run.layer


_PIPELINES = {"p": pipeline([node(_uses_run, "params:run", "out")])}


def _parameter_error() -> ParameterProblemsError:
    """What the project context raises when Kedro's parameter validation fails."""
    problems = parameter_problems({"run": {"setting": "s", "layer": "nine", "sedd": 1}}, _PIPELINES)
    try:
        try:
            raise ParameterValidationError("Parameter validation failed:\n- Parameter 'run': ...")
        except ParameterValidationError as kedro_error:
            raise ParameterProblemsError(problems) from kedro_error
    except ParameterProblemsError as exc:
        return exc


def test_parameter_problems_keep_pydantic_structure() -> None:
    problems = parameter_problems({"run": {"setting": "s", "layer": "nine", "sedd": 1}}, _PIPELINES)
    assert [(p.key, p.loc) for p in problems] == [("run", ("layer",)), ("run", ("sedd",))]
    assert str(problems[1]) == "params:run.sedd: Extra inputs are not permitted"
    assert parameter_problems({"run": {"setting": "s", "layer": 3}}, _PIPELINES) == []
    assert parameter_problems({}, _PIPELINES) == []
    assert parameter_problems({"run": None}, _PIPELINES) == [
        ParameterProblem("run", (), "value is None but type is not Optional")
    ]
    optional = {"p": pipeline([node(_uses_optional_run, "params:run", "out")])}
    assert parameter_problems({"run": None}, optional) == []


def test_parameter_error_becomes_one_line_naming_each_key() -> None:
    error = _parameter_error()
    assert _user_error(error) is error
    line = summarise_error(error)
    assert "\n" not in line
    assert line.startswith("Parameter validation failed: params:run.layer: ")
    assert "params:run.sedd: Extra inputs are not permitted" in line


def test_unstructured_parameter_error_is_still_one_line() -> None:
    line = summarise_error(ParameterValidationError("Parameter validation failed:\n- Parameter 'run': bad"))
    assert line == "Parameter validation failed: - Parameter 'run': bad"


def test_user_error_found_through_the_exception_chain() -> None:
    try:
        try:
            raise AxbenchConfigError("model.name_or_path: /nope does not exist")
        except AxbenchConfigError as inner:
            raise RuntimeError("node failed") from inner
    except RuntimeError as outer:
        found = _user_error(outer)
    assert isinstance(found, AxbenchConfigError)
    assert summarise_error(found) == "model.name_or_path: /nope does not exist"


def test_unrelated_errors_are_not_swallowed() -> None:
    assert _user_error(RuntimeError("boom")) is None


@pytest.mark.parametrize("key", ["setting", "layer"])
def test_run_settings_require_keys(key: str) -> None:
    values = {"setting": "s", "layer": 3}
    values.pop(key)
    with pytest.raises(ValidationError, match=key):
        RunSettings(**values)
