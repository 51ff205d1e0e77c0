"""Where the project's ``conf/`` lives, for files the LLM layer reads directly (prompts, prices, credentials).

Order: the ``AXBENCH_PROJECT_ROOT`` environment variable; the current directory or one of its parents holding
``conf/base`` (how ``kedro run`` is started); the source checkout this package was imported from.
"""

from __future__ import annotations

import os
from pathlib import Path

from axbench_kedro.errors import AxbenchConfigError

__all__ = ["project_root", "resolve_project_path"]


def _looks_like_project(path: Path) -> bool:
    return (path / "conf" / "base").is_dir()


def project_root() -> Path:
    """The Kedro project root (the folder holding ``conf/base``)."""
    env = os.environ.get("AXBENCH_PROJECT_ROOT")
    if env:
        root = Path(env).expanduser().resolve()
        if not _looks_like_project(root):
            raise AxbenchConfigError(f"AXBENCH_PROJECT_ROOT={env} has no conf/base folder")
        return root
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if _looks_like_project(candidate):
            return candidate
    source = Path(__file__).resolve().parents[3]  # src/axbench_kedro/llm/paths.py → the checkout
    if _looks_like_project(source):
        return source
    raise AxbenchConfigError(
        "cannot find the project root (a folder with conf/base): run from the project folder or set AXBENCH_PROJECT_ROOT"
    )


def resolve_project_path(path: str | Path) -> Path:
    """``path`` as is when absolute, else relative to :func:`project_root`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path
