"""Fixtures of the method tests: a tiny model with two synthetic concepts; plugins installed for one test only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from axbench_kedro.methods.trainer import build_concepts
from fixtures.tiny_models import make_tiny_target_model

from .plugin_install import PluginInstaller
from .synthetic_data import make_concepts_meta, make_train_data


@pytest.fixture(scope="module")
def tm():
    """A tiny random Gemma-3 (3 layers, hidden 64), one per test module."""
    return make_tiny_target_model("gemma3", n_layers=3, hidden=64, seed=1)


@pytest.fixture(scope="module")
def concepts():
    """Two synthetic concepts of 6 positives and 6 pool negatives each, as the trainer groups them."""
    return build_concepts(make_train_data(n_concepts=2, n_pos=6, n_pool=6), make_concepts_meta(2))


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
