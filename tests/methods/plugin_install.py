"""Install a method plugin for one test, the way ``pip install`` would, without building or copying anything.

``pip install`` of a package puts its code on ``sys.path`` and writes ``<dist>-<version>.dist-info/`` holding
``METADATA`` and ``entry_points.txt``; :mod:`importlib.metadata` finds the entry points from that folder. Here the
folder is written into a temporary directory that is put on ``sys.path`` next to ``tests/plugin_pkg`` (the code),
and the method registry is told to look again. Everything is undone afterwards.

Example:
    >>> install = PluginInstaller(tmp_path, monkeypatch)  # doctest: +SKIP
    >>> install.toy_package()  # doctest: +SKIP
    >>> "ToyMean" in list_methods()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from axbench_kedro.methods.registry import ENTRY_POINT_GROUP, refresh_methods

__all__ = ["PLUGIN_ROOT", "TOY_DIST", "PluginInstaller", "toy_entry_points"]

PLUGIN_ROOT = Path(__file__).resolve().parents[1] / "plugin_pkg"
TOY_DIST = "axbench-toy-method"


def toy_entry_points() -> dict[str, str]:
    """The method entry points declared in ``tests/plugin_pkg/pyproject.toml``."""
    project = tomllib.loads((PLUGIN_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return dict(project["entry-points"][ENTRY_POINT_GROUP])


class PluginInstaller:
    """Writes ``.dist-info`` folders into ``<tmp>/site`` (on ``sys.path`` for the test) and refreshes the registry."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.site = tmp_path / "site"
        self.site.mkdir(parents=True, exist_ok=True)
        self.monkeypatch = monkeypatch
        monkeypatch.syspath_prepend(str(self.site))

    def install(
        self, dist: str, entry_points: dict[str, str], version: str = "0.1", code: Path | None = None
    ) -> None:
        """Register ``entry_points`` (``{name: "module[:Class]"}``) of distribution ``dist``; ``code`` goes on
        ``sys.path`` too."""
        info = self.site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{name} = {value}" for name, value in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if code is not None and str(code) not in sys.path:
            self.monkeypatch.syspath_prepend(str(code))
        refresh_methods()

    def toy_package(self) -> None:
        """``pip install tests/plugin_pkg``: ToyMean (module entry point) and ToyRandom (class entry point)."""
        self.install(TOY_DIST, toy_entry_points(), code=PLUGIN_ROOT)

    def uninstall_all(self) -> None:
        """Forget every plugin (the ``sys.path`` entries go when ``monkeypatch`` is undone)."""
        refresh_methods()
