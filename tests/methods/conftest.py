"""Fixtures of the method tests: plugins installed through entry points for one test only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .plugin_install import PluginInstaller


@pytest.fixture
def plugins(tmp_path, monkeypatch) -> Iterator[PluginInstaller]:
    """Install method plugins for this test; afterwards the registry forgets them and ``sys.path`` is restored."""
    installer = PluginInstaller(tmp_path, monkeypatch)
    yield installer
    installer.uninstall_all()


@pytest.fixture
def toy_plugin(plugins) -> PluginInstaller:
    """The toy plugin package (``tests/plugin_pkg``: ToyMean and ToyRandom) installed through its entry points."""
    plugins.toy_package()
    return plugins
