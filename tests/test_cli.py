"""The project CLI turns configuration mistakes into one readable line."""

from __future__ import annotations

import pytest
from kedro.validation import ParameterValidationError
from pydantic import ValidationError

from axbench_kedro.cli import _user_error, summarise_error
from axbench_kedro.config.common import RunSettings
from axbench_kedro.errors import AxbenchConfigError


def _kedro_style_error() -> ParameterValidationError:
    try:
        RunSettings(setting="s", layer="nine", sedd=1)
    except ValidationError as exc:
        return ParameterValidationError(f"Parameter validation failed:\n- Parameter 'run': {exc}")
    raise AssertionError("RunSettings accepted bad input")


def test_parameter_error_becomes_one_line_naming_each_key() -> None:
    line = summarise_error(_kedro_style_error())
    assert "\n" not in line
    assert "params:run.layer" in line
    assert "params:run.sedd: Extra inputs are not permitted" in line


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
