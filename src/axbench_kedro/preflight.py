"""Run-start checks of inputs that a node would otherwise reject only after earlier nodes did work.

:class:`~axbench_kedro.hooks.ProjectHooks` calls them before the first node; each raises one line naming the key
or file (``AxbenchConfigError`` / ``AxbenchDataError``), which the project CLI prints as the run's only error line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError

__all__ = ["check_load_versions", "check_instruction_pool", "check_sae_file"]


def check_load_versions(catalog: Any, load_versions: Mapping[str, str] | None) -> None:
    """Every ``--load-versions name:version`` names an existing version of a versioned catalog dataset.

    Raises:
        AxbenchConfigError: ``--load-versions <name>:<version>: ...`` with the versions that do exist.
    """
    for name, version in (load_versions or {}).items():
        where = f"--load-versions {name}:{version}"
        if name not in catalog:
            raise AxbenchConfigError(f"{where}: no dataset {name!r} in the catalog")
        dataset = catalog.get(name)
        if dataset.exists():
            continue
        folder = getattr(dataset, "_filepath", None)
        found = (
            sorted(p.name for p in Path(str(folder)).iterdir())
            if folder and Path(str(folder)).is_dir()
            else []
        )
        known = ", ".join(found[-5:]) if found else "none"
        raise AxbenchConfigError(
            f"{where}: no such version of {name} under {folder} (versions there: {known})"
        )


def check_instruction_pool(instructions: Any, source: str, needs: Mapping[str, int]) -> None:
    """The steering instructions hold an ``instruction`` column and enough rows for each instruction split.

    Args:
        instructions: what the ``steering_instructions`` dataset loaded.
        source: its file, for the message.
        needs: ``{parameter key: n_selection + n_test}`` of each pipeline that samples from it.

    Raises:
        AxbenchDataError: ``steering_instructions: <file> ...`` naming the parameter that asks for too many.
    """
    columns = list(getattr(instructions, "columns", []))
    if "instruction" not in columns:
        raise AxbenchDataError(
            f"steering_instructions: {source}: column 'instruction': missing (columns: {columns})"
        )
    rows = len(instructions)
    for key, total in needs.items():
        if total > rows:
            raise AxbenchDataError(
                f"steering_instructions: {source} has {rows} instructions but {key} needs n_selection + n_test = "
                f"{total} per concept"
            )


def check_sae_file(source: Any, d_model: int, expected_width: int | None) -> None:
    """A configured GemmaScope ``params.npz`` fits the target model (array headers only; no data is read).

    Args:
        source: what the ``sae_params`` dataset loaded (an ``SAESource``; an absent file is not an error).
        d_model: the target model's hidden size.
        expected_width: ``training.sae_width`` (``None`` = not checked).

    Raises:
        AxbenchConfigError: ``sae_params: <file> ...`` naming the array or the size that does not fit.
    """
    from axbench_kedro.methods.sae_file import check_sae_shapes, sae_shapes

    if not getattr(source, "available", False):
        return
    check_sae_shapes(sae_shapes(source.path), source.path, d_model, expected_width)
