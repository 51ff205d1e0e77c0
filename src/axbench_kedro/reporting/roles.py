"""Method roles in reports: a ``role`` column (``method`` | ``control``) and ``<name> (control)`` labels.

A method's role is its class attribute :attr:`~axbench_kedro.methods.base.Method.role`, looked up through the
registry (:func:`axbench_kedro.methods.registry.method_role`); nothing here knows a method by name. CSV tables gain a
``role`` column next to ``method``; Markdown tables show controls as ``<name> (control)`` instead.

Example:
    >>> method_label("DiffMean"), method_label("X", "control")
    ('DiffMean', 'X (control)')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

__all__ = [
    "CONTROL_NOTE",
    "DEFAULT_ROLE",
    "ROLE_COLUMN",
    "control_note",
    "label_methods",
    "method_label",
    "role_of",
    "with_roles",
]

ROLE_COLUMN = "role"
DEFAULT_ROLE = "method"
CONTROL_NOTE = (
    "Rows marked *(control)* are controls (reference rows such as the chance level), "
    "not methods of the AxBench paper."
)


def role_of(method: str) -> str:
    """The registered role of ``method`` (``"method"`` for a name not registered here)."""
    from axbench_kedro.methods.registry import method_role

    return str(method_role(str(method)))


def method_label(method: str, role: str | None = None) -> str:
    """``method`` as readers see it: ``"<name> (<role>)"`` unless its role is ``"method"``.

    Args:
        method: the method name.
        role: its role; ``None`` looks it up in the registry.
    """
    role = role_of(method) if role is None or pd.isna(role) else str(role)
    return str(method) if role == DEFAULT_ROLE else f"{method} ({role})"


def with_roles(frame: pd.DataFrame, after: str = "method") -> pd.DataFrame:
    """``frame`` with a ``role`` column right after ``after`` (an existing ``role`` column is kept as is).

    Args:
        frame: a table with a method-name column.
        after: that column.

    Returns:
        A copy with the ``role`` column.
    """
    if ROLE_COLUMN in frame.columns or after not in frame.columns:
        return frame
    names = frame[after].astype(str)
    roles = {name: role_of(name) for name in names.unique()}
    out = frame.copy()
    out.insert(out.columns.get_loc(after) + 1, ROLE_COLUMN, names.map(roles).astype(object))
    return out


def label_methods(frame: pd.DataFrame, columns: Sequence[str] = ("method", "opponent")) -> pd.DataFrame:
    """A copy for Markdown: method names in ``columns`` labelled (see :func:`method_label`), ``role`` dropped.

    The ``method`` column uses the frame's own ``role`` column when there is one; other columns look their names up.
    """
    if frame.empty:
        return frame.drop(columns=[ROLE_COLUMN], errors="ignore")
    out = frame.copy()
    for column in columns:
        if column not in out.columns:
            continue
        if column == "method" and ROLE_COLUMN in out.columns:
            out[column] = [method_label(m, r) for m, r in zip(out[column], out[ROLE_COLUMN], strict=True)]
        else:
            out[column] = [method_label(m) for m in out[column]]
    return out.drop(columns=[ROLE_COLUMN], errors="ignore")


def control_note(methods: Iterable[str], roles: Iterable[str | None] | None = None) -> list[str]:
    """``["", CONTROL_NOTE]`` when one of ``methods`` is a control, else ``[]`` (for the foot of a section).

    Args:
        methods: method names shown.
        roles: their roles, in the same order (``None``: looked up).
    """
    names = list(methods)
    found = list(roles) if roles is not None else [None] * len(names)
    controls = [m for m, r in zip(names, found, strict=True) if method_label(m, r) != str(m)]
    return ["", CONTROL_NOTE] if controls else []
