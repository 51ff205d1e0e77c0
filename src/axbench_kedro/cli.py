"""Project CLI: ``kedro run`` as usual, but configuration mistakes end in one readable line.

Kedro's own failure on a bad parameter is a long traceback. Here the full trace goes to
``logs/last-error.log`` and the terminal gets one line naming the key or file, with exit code 1. Any other failure
is re-raised as Kedro reports it, its trace kept in ``logs/last-error.log`` too (API keys scrubbed). The line is built
from the errors' structure (``ParameterProblemsError.problems`` of the project context, pydantic's
``errors()``), never by parsing their text.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

import click
from kedro.framework.cli.project import run as kedro_run

from axbench_kedro.context import ParameterProblemsError
from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError

__all__ = ["cli", "summarise_error"]

# `--pipeline NAME` is what the docs of this project use; Kedro 1.7 prefers `--pipelines` but accepts both.
warnings.filterwarnings("ignore", message=".*'--pipeline' is deprecated.*")
# OmegaConf deprecation raised from inside Kedro's config loader: nothing a user can act on.
warnings.filterwarnings("ignore", message=".*register_new_resolver.*")

_USER_ERRORS: tuple[type[BaseException], ...] = (AxbenchConfigError, AxbenchDataError)


def _user_error(exc: BaseException) -> BaseException | None:
    """Find an error meant for the user anywhere in the exception chain."""
    from kedro.validation import ParameterValidationError
    from omegaconf.errors import InterpolationResolutionError
    from pydantic import ValidationError

    # InterpolationResolutionError: a ${globals:...} key the environment does not define (e.g. `setting`).
    kinds = (*_USER_ERRORS, ParameterValidationError, ValidationError, InterpolationResolutionError)
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kinds):
            return current
        current = current.__cause__ or current.__context__
    return None


def summarise_error(exc: BaseException) -> str:
    """One line for the user: which key or file is wrong and why.

    Args:
        exc: an error found by :func:`_user_error`.

    Returns:
        ``Parameter validation failed: params:<key>.<loc>: <msg>; …`` for parameter errors,
        ``<model>: <loc>: <msg>; …`` for other pydantic errors, otherwise the message on one line.
    """
    from pydantic import ValidationError

    if isinstance(exc, ParameterProblemsError):
        return "Parameter validation failed: " + "; ".join(str(p) for p in exc.problems)
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        return f"{exc.title}: " + "; ".join(parts)
    return " ".join(str(exc).split())


def _write_trace(exc: BaseException) -> Path | None:
    """Keep the full trace of a failed run in ``logs/last-error.log``, API keys scrubbed (``OPENAI_API_KEY``'s value
    and anything shaped like a key): the errors' own messages never hold one, this is the second line of defence."""
    from axbench_kedro.llm.errors import redact

    log = Path("logs") / "last-error.log"
    text = redact("".join(traceback.format_exception(exc)), os.environ.get("OPENAI_API_KEY"))
    try:
        log.parent.mkdir(exist_ok=True)
        log.write_text(text, encoding="utf-8")
    except OSError:  # a read-only working directory must not hide the run's own error
        return None
    return log


@click.group(name="axbench-kedro")
def cli() -> None:
    """Commands of the axbench-kedro project."""


@cli.command(name="run", params=list(kedro_run.params), help=kedro_run.help)
def run(**kwargs) -> None:  # type: ignore[no-untyped-def]
    # Kedro's validator logs each pydantic report over many lines; we print one line instead.
    logging.getLogger("kedro.validation").setLevel(logging.CRITICAL)
    try:
        kedro_run.callback(**kwargs)  # type: ignore[misc]
    except Exception as exc:
        log = _write_trace(exc)
        user_error = _user_error(exc)
        if user_error is None:
            raise
        click.secho(f"Error: {summarise_error(user_error)}", fg="red", err=True)
        if log is not None:
            click.echo(f"(full trace in {log})", err=True)
        sys.exit(1)
