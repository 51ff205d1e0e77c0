"""TargetModelDataset: spec checked at construction, memoized load, read-only."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, DatasetError
from pydantic import ValidationError

from axbench_kedro.datasets.target_model import TargetModelDataset
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.loading import convert_to_safetensors
from fixtures.tiny_models import make_tiny_target_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    tm = make_tiny_target_model("gemma3", n_layers=2, seed=9)
    return convert_to_safetensors(tm.model, tm.tokenizer, tmp_path_factory.mktemp("ds") / "tiny")


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"source": "local", "name_or_path": "/no/such/dir"}, "model.name_or_path"),
        ({"source": "gguf", "name_or_path": "/tmp", "gguf_file": "missing.gguf"}, "model.gguf_file"),
    ],
)
def test_missing_files_fail_at_construction(spec, key):
    with pytest.raises(AxbenchConfigError, match="^" + key.replace(".", r"\.") + ":"):
        TargetModelDataset(spec=spec)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"source": "ftp"}, "model.source"),
        ({"source": "local", "name_or_path": ".", "layer": 3}, "model.layer"),
        ({"source": "local", "name_or_path": 3}, "model.name_or_path"),
        ({"source": "local", "name_or_path": ".", "dtype": "fp8"}, "model.dtype"),
    ],
)
def test_bad_keys_and_values_are_one_validation_error(spec, key):
    with pytest.raises(ValidationError) as info:
        TargetModelDataset(spec=spec)
    assert [".".join(map(str, e["loc"])) for e in info.value.errors()] == [key]


def test_load_is_memoized_and_save_refused(tiny_dir):
    ds = TargetModelDataset(spec={"source": "local", "name_or_path": str(tiny_dir)}, metadata={"owner": "lm"})
    tm = ds.load()
    assert tm.n_layers == 2 and tm.d_model == 64
    assert TargetModelDataset(spec={"source": "local", "name_or_path": str(tiny_dir)}).load() is tm
    with pytest.raises(DatasetError, match="read-only"):
        ds.save(tm)
    assert ds._describe()["name_or_path"] == str(tiny_dir)
    assert "TargetModelDataset" in repr(ds)


def test_from_catalog_config(tiny_dir):
    catalog = DataCatalog.from_config(
        {
            "target_model": {
                "type": "axbench_kedro.datasets.target_model.TargetModelDataset",
                "spec": {"source": "local", "name_or_path": str(tiny_dir), "dtype": "auto", "device": "cpu"},
            }
        }
    )
    assert catalog.load("target_model").name == str(tiny_dir)
