"""Typed parameter blocks (pydantic), one module per pipeline; validated at run start.

Every block forbids unknown keys, so a typo stops the run with one line naming the key.
"""

from axbench_kedro.config.common import StrictModel

__all__ = ["StrictModel"]
