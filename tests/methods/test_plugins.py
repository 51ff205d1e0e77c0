"""Methods as plugins: built-in modules are discovered, third-party methods come through entry points.

The toy plugin (``tests/plugin_pkg``) is "installed" by writing the ``.dist-info`` folder pip would write (see
``plugin_install.py``); nothing in the project lists it.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import axbench_kedro.methods as methods_pkg
from axbench_kedro.cli import summarise_error
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.methods import default_methods, get_method, list_methods
from axbench_kedro.methods.registry import _METHODS

from .plugin_install import TOY_DIST

# The built-ins this file knows; a new built-in module joins the default list without editing this file.
KNOWN = ["DiffMean", "PCA", "LAT", "Probe", "ReFT-r1", "SSV", "SAE", "SAE-A", "BoW", "Prompt", "Random"]


def builtins() -> list[str]:
    """Every built-in method in its default order (discovered from the package, no plugins)."""
    return [name for name in default_methods() if _METHODS.plugin_source(name) is None]


METHODS_DIR = Path(methods_pkg.__file__).parent


# ---- built-ins -------------------------------------------------------------------------------------------------
def test_builtins_in_their_default_order() -> None:
    assert default_methods() == builtins()  # no plugin installed
    assert [name for name in builtins() if name in KNOWN] == KNOWN  # the known ones keep their relative order
    assert sorted(list_methods()) == list_methods() and set(list_methods()) == set(builtins())
    assert TrainingParams().methods is None and TrainingParams().method_names() == builtins()
    assert TrainingParams(methods=["SAE", "DiffMean"]).method_names() == ["SAE", "DiffMean"]


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports (TYPE_CHECKING blocks and function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _method_modules() -> set[str]:
    return {cls.__module__ for cls in _METHODS.classes().values()}


def test_builtin_method_modules_are_listed_nowhere() -> None:
    concrete = _method_modules()
    assert concrete >= {"axbench_kedro.methods.diffmean", "axbench_kedro.methods.sae"}
    for listing in ("__init__.py", "registry.py"):
        assert not _imported_modules(METHODS_DIR / listing) & concrete, listing
    training = Path(importlib.import_module("axbench_kedro.config.training").__file__).read_text(
        encoding="utf-8"
    )
    assert '"ReFT-r1"' not in training and "DEFAULT_METHODS" not in training


def test_base_knows_no_concrete_method() -> None:
    concrete = _method_modules()
    for helper in ("base.py", "sae_file.py"):
        assert not _imported_modules(METHODS_DIR / helper) & concrete, helper
    assert "axbench_kedro.methods.registry" not in _imported_modules(METHODS_DIR / "sae_file.py")


def test_a_new_builtin_module_is_discovered(tmp_path, monkeypatch) -> None:
    """A module dropped into the methods package is found with no other edit (here the package's search path is
    extended with a temporary folder instead of writing into the source tree)."""
    (tmp_path / "zz_toy_builtin.py").write_text(
        "import torch\n"
        "from axbench_kedro.methods import Method, register\n\n\n"
        "@register('ToyBuiltin')\n"
        "class ToyBuiltin(Method):\n"
        "    requires = frozenset({'activations'})\n\n"
        "    def train_concept(self, inputs, hp):\n"
        "        return {'weight': inputs.activations.tokens_where(1).mean(0), 'bias': torch.zeros(())}\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(methods_pkg, "__path__", [*methods_pkg.__path__, str(tmp_path)])
    monkeypatch.setattr(_METHODS, "_classes", dict(_METHODS._classes))  # the original comes back afterwards
    monkeypatch.setattr(_METHODS, "_loaded", False)
    try:
        assert "ToyBuiltin" in list_methods()
        assert default_methods()[-1] == "ToyBuiltin"  # no `order`: after the ordered built-ins
        assert TrainingParams().method_names()[-1] == "ToyBuiltin"
        assert _METHODS.plugin_source("ToyBuiltin") is None
    finally:
        sys.modules.pop("axbench_kedro.methods.zz_toy_builtin", None)
        monkeypatch.delattr(methods_pkg, "zz_toy_builtin", raising=False)


def test_helper_modules_register_nothing() -> None:
    assert not _method_modules() & {
        f"axbench_kedro.methods.{m}"
        for m in ("base", "registry", "trainer", "activations", "scoring", "rank1", "lm_tail", "lm_objective")
    }


# ---- entry-point plugins ---------------------------------------------------------------------------------------
def test_plugin_methods_are_registered_and_trained_by_default(toy_plugin) -> None:
    assert {"ToyMean", "ToyRandom"} <= set(list_methods())
    assert default_methods() == [
        *builtins(),
        "ToyMean",
        "ToyRandom",
    ]  # built-ins first, plugins alphabetically
    assert TrainingParams().method_names() == [*builtins(), "ToyMean", "ToyRandom"]
    assert get_method("ToyRandom").name == "ToyRandom"  # class entry point: named after the entry point
    toy = get_method("ToyMean")
    assert toy.steers and toy.detection_kind == "activation" and toy.magnitude_source == "latent_eval"
    assert f"distribution {TOY_DIST} 0.1" in _METHODS.plugin_source("ToyMean")
    assert "'ToyRandom = axbench_toy_method.random_dir:ToyRandom'" in _METHODS.plugin_source("ToyRandom")
    p = TrainingParams(methods=["DiffMean", "ToyMean"], hyperparameters={"ToyMean": {"scale": 2.0}})
    assert p.method_names() == ["DiffMean", "ToyMean"] and p.method_params("ToyMean").scale == 2.0
    with pytest.raises(ValueError, match="hyperparameters.ToyMean"):
        TrainingParams(hyperparameters={"ToyMean": {"scal": 2.0}})


def test_plugins_are_forgotten_after_the_test() -> None:
    """Runs after the plugin tests (file order): the fixtures left nothing behind."""
    assert default_methods() == builtins() and set(KNOWN) <= set(builtins())
    assert "axbench_toy_method" not in sys.modules


def _one_line_config_error(match: str) -> str:
    with pytest.raises(AxbenchConfigError, match=match) as info:
        list_methods()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_missing_plugin_module_is_one_line_naming_the_entry_point(plugins) -> None:
    plugins.install("axbench-broken-plugin", {"broken": "axbench_no_such_module"})
    message = _one_line_config_error("failed to load")
    assert "method plugin entry point 'broken = axbench_no_such_module'" in message
    assert "distribution axbench-broken-plugin 0.1" in message
    assert "ModuleNotFoundError: No module named 'axbench_no_such_module'" in message
    with pytest.raises(AxbenchConfigError, match="broken = axbench_no_such_module"):
        get_method("DiffMean")  # nothing runs with a broken plugin installed
    # the run's parameters already fail (training.methods: null loads the plugins), in one line on the CLI
    with pytest.raises(ValidationError) as info:
        TrainingParams.model_validate({"methods": None})
    line = summarise_error(info.value)
    assert "\n" not in line and "broken = axbench_no_such_module" in line and "axbench-broken-plugin" in line
    with pytest.raises(ValidationError, match="broken = axbench_no_such_module"):
        TrainingParams()


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        (
            "raise RuntimeError('boom at import')\n",
            "axbench_bad_plugin",
            "failed to load: RuntimeError: boom at import",
        ),
        ("X = 1\n", "axbench_bad_plugin", "registered no method: module axbench_bad_plugin"),
        ("X = 1\n", "axbench_bad_plugin:X", "names int 1, neither a module nor a class"),
        (
            "class NotAMethod:\n    pass\n",
            "axbench_bad_plugin:NotAMethod",
            "NotAMethod, not a Method subclass",
        ),
        (
            "from axbench_kedro.methods import register\n"
            "from axbench_kedro.methods.diffmean import DiffMean\n\n\n"
            "@register('DiffMean')\n"
            "class MyDiffMean(DiffMean):\n"
            "    pass\n",
            "axbench_bad_plugin",
            "failed to load: ValueError: method 'DiffMean' is already registered by "
            "axbench_kedro.methods.diffmean.DiffMean",
        ),
    ],
    ids=["raises", "registers-nothing", "not-a-class", "not-a-method", "name-clash"],
)
def test_a_faulty_plugin_is_one_line_naming_it(plugins, source, value, expected) -> None:
    (plugins.site / "axbench_bad_plugin.py").write_text(source, encoding="utf-8")
    plugins.install("axbench-bad-plugin", {"bad": value}, version="2.0")
    message = _one_line_config_error(expected)
    assert (
        f"entry point 'bad = {value}' (group axbench_kedro.methods, distribution axbench-bad-plugin 2.0)"
        in message
    )
    assert "DiffMean" in _METHODS._classes  # the built-ins stay registered
    sys.modules.pop("axbench_bad_plugin", None)


def test_a_subclass_of_a_builtin_needs_its_own_name(plugins) -> None:
    """A class entry point inherits ``name`` and ``order`` from its base: it is registered under the entry point's
    name and placed with the plugins."""
    (plugins.site / "axbench_sub_plugin.py").write_text(
        "from axbench_kedro.methods.diffmean import DiffMean\n\n\nclass Sub(DiffMean):\n    pass\n",
        encoding="utf-8",
    )
    plugins.install("axbench-sub-plugin", {"DiffMeanCopy": "axbench_sub_plugin:Sub"})
    assert get_method("DiffMeanCopy").name == "DiffMeanCopy" and get_method("DiffMean").name == "DiffMean"
    assert default_methods()[-1] == "DiffMeanCopy"
