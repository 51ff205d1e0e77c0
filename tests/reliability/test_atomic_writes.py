"""Atomic saves (issue 14): a save that fails half-way leaves the previous file, no partial one, no temporary file.

kedro-datasets' own ``pandas.CSVDataset`` / ``json.JSONDataset`` write straight into the target, so a run killed
(or failing) during a save left a truncated file under the final name; the project's datasets
(``axbench_kedro.datasets.atomic``, ``datasets.parquet``) write a temporary file and rename it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kedro.io import Version
from kedro_datasets.pandas import CSVDataset as KedroCSVDataset

from axbench_kedro.datasets.atomic import CSVDataset, JSONDataset, MatplotlibDataset
from axbench_kedro.datasets.markdown import MarkdownDataset
from axbench_kedro.datasets.parquet import ParquetDataset


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("serialisation fails half-way")

    __repr__ = __str__


@pytest.mark.parametrize(
    ("make", "data"),
    [
        (lambda p: CSVDataset(filepath=str(p / "t.csv")), "frame"),
        (lambda p: ParquetDataset(filepath=str(p / "t.parquet")), "frame"),
        (lambda p: JSONDataset(filepath=str(p / "t.json")), "json"),
        (lambda p: CSVDataset(filepath=str(p / "v.csv"), version=Version(None, "2026-01-01T00.00.00.000Z")), "frame"),
    ],
)  # fmt: skip
def test_a_save_that_fails_half_way_leaves_the_old_file(tmp_path: Path, make: Any, data: str) -> None:
    dataset = make(tmp_path)
    good = pd.DataFrame({"a": [1, 2]}) if data == "frame" else {"a": [1, 2]}
    if dataset._version is None:
        dataset.save(good)
        before = sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    else:
        before = []
    bad = pd.DataFrame({"a": list(range(3000)), "b": ["x"] * 2999 + [_Unprintable()]})
    with pytest.raises(Exception):  # noqa: B017, PT011 - Kedro wraps the writer's error
        dataset.save(bad if data == "frame" else {"a": list(range(3000)), "b": _Unprintable()})
    after = sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    assert after == before  # the old file unchanged, no partial new one, no temporary file left


def test_kedro_datasets_own_csv_save_tears(tmp_path: Path) -> None:
    """Why the wrapper exists: the same failing save through kedro-datasets leaves a partial file."""
    bad = pd.DataFrame({"a": list(range(3000)), "b": ["x"] * 2999 + [_Unprintable()]})
    with pytest.raises(Exception):  # noqa: B017, PT011
        KedroCSVDataset(filepath=str(tmp_path / "t.csv")).save(bad)
    assert (tmp_path / "t.csv").stat().st_size > 0


def test_atomic_datasets_round_trip_versioned(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    version = Version(None, "2026-01-01T00.00.00.000Z")
    csv = CSVDataset(filepath=str(tmp_path / "t.csv"), version=version, save_args={"index": False})
    csv.save(pd.DataFrame({"a": [1, 2]}))
    assert csv.load()["a"].tolist() == [1, 2]
    md = MarkdownDataset(filepath=str(tmp_path / "r.md"), version=version)
    md.save("# Title\n")
    assert md.load() == "# Title\n"
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    MatplotlibDataset(filepath=str(tmp_path / "f.png"), version=version).save(fig)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [f"{n}/{version.save}/{n}" for n in ("f.png", "r.md", "t.csv")]
    assert (tmp_path / "f.png" / version.save / "f.png").read_bytes()[:4] == b"\x89PNG"
