"""Rows on disk (SFT): each concept's tensors are written when the concept finishes, read back one concept at a time,
cached without being loaded, hard-linked into the versioned artifact folder, and temporary files do not outlive the
artifact."""

from __future__ import annotations

import gc
import os
import pickle
from pathlib import Path

import pytest
import torch
from kedro.io.core import DatasetError

import axbench_kedro.datasets.method_artifacts as ma
from axbench_kedro.datasets.method_artifacts import ArtifactStore, load_artifacts, save_artifacts
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.sft import SFT
from axbench_kedro.methods.trainer import TrainOptions, train_methods

from .pipeline_inputs import LAYER

# one block, one epoch: the storage is under test, not the fine-tune
HP = {"lr": 3e-3, "epochs": 1, "batch_size": 6, "trainable": "layers", "max_concepts": None}
OPTS = TrainOptions(setting="t", layer=LAYER, seed=42)


def _train(tm, concepts, store=None):
    arts, _ = train_methods(tm, concepts, [(get_method("SFT"), HP)], OPTS, store=store)
    return arts["SFT"]


def _tensor_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.safetensors") if not p.name.startswith(".tmp"))


def test_each_concept_is_on_disk_before_the_next_one_trains(tm, concepts, tmp_path, monkeypatch) -> None:
    seen: list[int] = []
    train_concept = SFT.train_concept

    def spy(self, inputs, hp):
        seen.append(len(_tensor_files(tmp_path)))
        return train_concept(self, inputs, hp)

    monkeypatch.setattr(SFT, "train_concept", spy)
    art = _train(tm, concepts, ArtifactStore(tmp_path))
    assert seen == [0, 1]  # concept 0's file existed when concept 1 started
    assert not art.tensors and sorted(art.row_files) == [0, 1]
    assert {Path(r.path) for r in art.row_files.values()} == set(_tensor_files(tmp_path))
    assert "train_loss" in art.meta and len(art.meta["train_loss"]) == 2


def test_a_cached_rerun_reads_no_tensor(tm, concepts, tmp_path, monkeypatch) -> None:
    store = ArtifactStore(tmp_path)
    first = _train(tm, concepts, store)

    def no_read(*args, **kwargs):
        raise AssertionError("a cached row was loaded")

    monkeypatch.setattr(ma, "load_file", no_read)
    monkeypatch.setattr(SFT, "train_concept", no_read)
    again = _train(tm, concepts, store)
    assert again.row_files == first.row_files  # same files, same SHA-256 (recorded by put, not recomputed)
    assert again.fingerprint() == first.fingerprint()


def test_saved_artifact_links_the_rows_and_reads_back_the_same(tm, concepts, tmp_path) -> None:
    art = _train(tm, concepts, ArtifactStore(tmp_path / "cache"))
    folder = tmp_path / "version"
    save_artifacts(folder, {"SFT": art})
    rows = sorted((folder / "SFT.rows").iterdir())
    assert [p.name for p in rows] == ["0.safetensors", "1.safetensors"]
    assert all(p.stat().st_ino == Path(art.row_files[int(p.stem)].path).stat().st_ino for p in rows)
    back = load_artifacts(folder)["SFT"]
    assert back.fingerprint() == art.fingerprint()
    assert {c: r.sha256 for c, r in back.row_files.items()} == {c: r.sha256 for c, r in art.row_files.items()}
    assert all(r.sha256 == ma.file_sha256(r.path) for r in back.row_files.values())
    method = get_method("SFT")
    for c in (0, 1):
        assert method.adapter_sha(back, c) == method.adapter_sha(art, c)
        a, b = art.concept_tensors(c), back.concept_tensors(c)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    os.unlink(rows[1])
    with pytest.raises(DatasetError, match=r"SFT\.rows/1\.safetensors.*concept_id 1 is missing"):
        load_artifacts(folder)


def test_without_a_cache_the_temporary_rows_live_as_long_as_the_artifact(tm, concepts) -> None:
    art = _train(tm, concepts[:1])
    path = Path(art.row_files[0].path)
    assert path.is_file() and str(path.parent.parent).startswith(
        os.path.realpath(os.environ.get("TMPDIR", "/tmp"))
    )
    copy = pickle.loads(pickle.dumps(art))  # what a Dask worker gets: paths, no ownership
    assert copy.concept_tensors(0).keys() == art.concept_tensors(0).keys()
    del copy
    gc.collect()
    assert path.is_file()
    del art
    gc.collect()
    assert not path.exists() and not path.parent.parent.exists()


def test_store_writes_copy_only_tensors_that_share_storage() -> None:
    base = torch.arange(12.0)
    own = torch.ones(3)
    safe = ma._safe_tensors({"own": own, "view": base[2:5], "whole": base, "again": base})
    ptr = lambda t: t.untyped_storage().data_ptr()  # noqa: E731
    assert ptr(safe["own"]) == ptr(own) and ptr(safe["whole"]) == ptr(base)  # a model-sized row is not copied
    assert ptr(safe["view"]) != ptr(base) and ptr(safe["again"]) != ptr(base)
    assert torch.equal(safe["view"], base[2:5]) and torch.equal(safe["again"], base)
