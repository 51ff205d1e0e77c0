"""Bad inputs through the real entry point: one line naming the key or file, exit code 1, nothing written.

Every case runs the project's ``kedro run`` command (``axbench_kedro.cli.run``, what ``kedro run`` dispatches to)
in-process on one copy of the project per module, in an environment of its own (the demo's configuration with some
globals and parameters changed, as a user would start). The checks that stop these runs happen before the first node
(parameter validation, the run-start preflight of ``ProjectHooks``), so no case loads a model: the embedded model's
dimensions come from its metadata only.

Before each case the copy holds a finished earlier run's ``train_data`` (a released-layout parquet): after the
failing run every file under ``data/`` keeps its bytes and its modification time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fixtures.released_layout import make_released_frames

ROOT = Path(__file__).resolve().parents[2]
SETTING = "embedded_270m_l12"  # the demo's setting: every case's environment keeps it
OLD_VERSION = "2020-01-01T00.00.00.000Z"
PLANTED = f"data/02_intermediate/{SETTING}/train_data.parquet/{OLD_VERSION}/train_data.parquet"
EMBEDDED_HIDDEN = 640  # gemma-3-270m


# --- inputs -----------------------------------------------------------------------------------------------------
def _released(kind: str, mutate: Callable[[Any], Any] | None = None) -> Callable[[Path], None]:
    """Writer of a released-layout ``train`` / ``test`` parquet, changed by ``mutate`` first."""

    def write(path: Path) -> None:
        train, test = make_released_frames(n_concepts=2)
        frame = train if kind == "train" else test
        (mutate(frame) if mutate else frame).to_parquet(path)

    return write


def _two_texts(frame: Any) -> Any:
    """Concept 0's positives under two different concept texts."""
    frame = frame.copy()
    rows = frame.index[(frame["concept_id"] == 0) & (frame["category"] == "positive")]
    frame.loc[rows[0], "output_concept"] = "some other concept"
    return frame


def _sae(w_enc: tuple[int, int], w_dec: tuple[int, int] | None = None) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        d, width = w_enc
        dec = w_dec or (width, d)
        arrays = {
            "W_enc": np.zeros(w_enc, np.float32),
            "b_enc": np.zeros(width, np.float32),
            "threshold": np.zeros(width, np.float32),
            "W_dec": np.zeros(dec, np.float32),
            "b_dec": np.zeros(d, np.float32),
        }
        with path.open("wb") as handle:
            np.savez(handle, **arrays)

    return write


def _neuronpedia(n: int = 2) -> str:
    records = [
        {
            "modelId": "gemma-2-2b",
            "layer": "20-gemmascope-res-16k",
            "index": str(i),
            "description": f"concept {i}",
        }
        for i in range(n)
    ]
    return json.dumps(records)


@dataclass(frozen=True)
class Case:
    """One bad input: what the user sets, the pipeline run, and what the error line must name."""

    name: str
    pipeline: str
    expect: tuple[str, ...]  # substrings of the one error line
    globals_: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str | bytes | Callable[[Path], None]] = field(
        default_factory=dict
    )  # relative to raw/<case>
    args: tuple[str, ...] = ()
    no_key: bool = False


def _raw(case: str, name: str) -> str:
    return f"data/01_raw/bad/{case}/{name}"


CASES = [
    Case(
        "missing_credentials",
        "datagen",
        ("openai.api_key",),
        globals_={"generator": {"backend": "openai", "model": "gpt-4o-mini"}},
        no_key=True,
    ),
    Case(
        "unknown_method",
        "training",
        ("params:training.methods", "NoSuchMethod"),
        args=("--params", "training.methods=NoSuchMethod"),
    ),
    Case("layer_out_of_range", "training", ("layer: 99", "[0, 18)"), globals_={"layer": 99}),
    Case(
        "empty_concept_list",
        "datagen",
        (_raw("empty_concept_list", "concepts.csv"), "no concepts"),
        globals_={"concept_list": _raw("empty_concept_list", "concepts.csv")},
        files={"concepts.csv": "concept,url\n"},
    ),
    Case(
        "truncated_neuronpedia_json",
        "datagen",
        (_raw("truncated_neuronpedia_json", "export.json"), "not valid JSON"),
        globals_={"concept_list": _raw("truncated_neuronpedia_json", "export.json")},
        files={"export.json": _neuronpedia()[:-30]},
    ),
    Case(
        "malformed_neuronpedia_record",
        "datagen",
        (_raw("malformed_neuronpedia_record", "export.json"), "column 'description'"),
        globals_={"concept_list": _raw("malformed_neuronpedia_record", "export.json")},
        files={"export.json": json.dumps([{"modelId": "gemma-2-2b", "layer": "20-x", "index": "1"}])},
    ),
    Case(
        "json_not_a_list",
        "datagen",
        (_raw("json_not_a_list", "export.json"), "must be a JSON list"),
        globals_={"concept_list": _raw("json_not_a_list", "export.json")},
        files={"export.json": json.dumps({"explanations": json.loads(_neuronpedia())})},
    ),
    Case(
        "duplicate_concept_id_two_texts",
        "datagen",
        (_raw("duplicate_concept_id_two_texts", "train.parquet"), "column 'concept_id'", "two concept texts"),
        globals_={"provided": {"train_data": _raw("duplicate_concept_id_two_texts", "train.parquet")}},
        files={"train.parquet": _released("train", _two_texts)},
    ),
    Case(
        "csv_without_concept_column",
        "datagen",
        (_raw("csv_without_concept_column", "concepts.csv"), "column 'concept'"),
        globals_={"concept_list": _raw("csv_without_concept_column", "concepts.csv")},
        files={"concepts.csv": "description,url\ncats,\ndogs,\n"},
    ),
    Case(
        "non_utf8_concept_file",
        "datagen",
        (_raw("non_utf8_concept_file", "concepts.csv"), "not UTF-8"),
        globals_={"concept_list": _raw("non_utf8_concept_file", "concepts.csv")},
        files={"concepts.csv": "concept,url\ncaf\u00e9 culture,\n".encode("latin-1")},
    ),
    Case(
        "empty_factor_grid",
        "steering_eval",
        ("params:steering_eval.factors", "at least one factor"),
        params={"steering_eval": {"factors": []}},
    ),
    Case(
        "non_positive_factor",
        "steering_eval",
        ("params:steering_eval.factors", "> 0"),
        params={"steering_eval": {"factors": [-0.2, 0.1]}},
    ),
    Case(
        "non_positive_method_factor",
        "steering_eval",
        ("steering_eval.method_factors.RePS", "> 0"),
        params={"steering_eval": {"method_factors": {"RePS": [0.0, 10.0]}}},
    ),
    Case(
        "nonexistent_model_path",
        "training",
        ("model.name_or_path", "no-such-model"),
        globals_={"model": {"source": "local", "name_or_path": "/nonexistent/no-such-model"}},
    ),
    Case(
        "sae_hidden_size_mismatch",
        "training",
        ("sae_params", "sae.npz", f"hidden size is {EMBEDDED_HIDDEN}"),
        globals_={"sae_params": _raw("sae_hidden_size_mismatch", "sae.npz")},
        files={"sae.npz": _sae((8, 16))},
    ),
    Case(
        "sae_width_mismatch",
        "training",
        ("sae_params", "sae.npz", "training.sae_width"),
        globals_={"sae_params": _raw("sae_width_mismatch", "sae.npz")},
        params={"training": {"sae_width": 32}},
        files={"sae.npz": _sae((EMBEDDED_HIDDEN, 16))},
    ),
    Case(
        "sae_inconsistent_shapes",
        "training",
        ("sae_params", "sae.npz", "W_dec"),
        globals_={"sae_params": _raw("sae_inconsistent_shapes", "sae.npz")},
        files={"sae.npz": _sae((EMBEDDED_HIDDEN, 16), w_dec=(15, EMBEDDED_HIDDEN))},
    ),
    Case(
        "corrupt_parquet",
        "datagen",
        (_raw("corrupt_parquet", "train.parquet"), "cannot be read"),
        globals_={"provided": {"train_data": _raw("corrupt_parquet", "train.parquet")}},
        files={"train.parquet": b"PAR1 this is not a parquet file"},
    ),
    Case(
        "released_parquet_missing_column",
        "datagen",
        (_raw("released_parquet_missing_column", "test.parquet"), "column 'sae_link': missing"),
        globals_={"provided": {"latent_eval_data": _raw("released_parquet_missing_column", "test.parquet")}},
        files={"test.parquet": _released("test", lambda f: f.drop(columns=["sae_link"]))},
    ),
    Case(
        "instruction_splits_larger_than_pool",
        "steering_eval",
        ("steering_instructions", "instructions.csv", "steering_eval.instructions"),
        globals_={"steering_instructions": _raw("instruction_splits_larger_than_pool", "instructions.csv")},
        files={"instructions.csv": "instruction\nSay hi.\nName a colour.\nCount to three.\n"},
    ),
    Case(
        "suppression_splits_larger_than_pool",
        "suppression",
        ("steering_instructions", "instructions.csv", "suppression.steering.instructions"),
        globals_={"steering_instructions": _raw("suppression_splits_larger_than_pool", "instructions.csv")},
        files={"instructions.csv": "instruction\nSay hi.\nName a colour.\nCount to three.\n"},
    ),
    Case(
        "load_version_that_does_not_exist",
        "training",
        ("--load-versions train_data:2001-01-01T00.00.00.000Z", f"versions there: {OLD_VERSION}"),
        args=("--load-versions", "train_data:2001-01-01T00.00.00.000Z"),
    ),
]


# --- harness ----------------------------------------------------------------------------------------------------
def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) and value else value
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's configuration and raw data, with an earlier run's ``train_data`` version."""
    from kedro.framework.startup import bootstrap_project

    dest = tmp_path_factory.mktemp("bad_inputs") / "project"
    dest.mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "conf",
        dest / "conf",
        ignore=lambda folder, names: (
            {n for n in names if n == "local" or n.startswith("credentials")}
            if Path(folder) != ROOT / "conf" / "base"
            else set()
        ),
    )
    (dest / "conf" / "local").mkdir()
    (dest / "src").mkdir()  # Kedro wants one; the installed package is what runs
    shutil.copytree(ROOT / "data" / "01_raw", dest / "data" / "01_raw")
    planted = dest / PLANTED
    planted.parent.mkdir(parents=True)
    make_released_frames(n_concepts=2)[0].to_parquet(planted)
    os.utime(planted, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    bootstrap_project(dest)
    return dest


def _make_env(project: Path, case: Case) -> None:
    env = project / "conf" / case.name
    if env.exists():
        shutil.rmtree(env)
    demo = project / "conf" / "demo"
    env.mkdir()
    for name, override in (("globals.yml", case.globals_), ("parameters.yml", case.params)):
        config = yaml.safe_load((demo / name).read_text(encoding="utf-8"))
        (env / name).write_text(yaml.safe_dump(_merge(config, override)), encoding="utf-8")
    for name, content in case.files.items():
        path = project / _raw(case.name, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder``: modification time (ns) and SHA-256."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _kedro_run(project: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``kedro run <args>`` in-process, as the ``kedro`` command dispatches it (the project's ``cli.run``)."""
    from axbench_kedro.cli import run

    monkeypatch.chdir(project)
    monkeypatch.setenv("COLUMNS", "300")
    return CliRunner().invoke(run, args)


# --- tests ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_stops_the_run_with_one_line(
    case: Case, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _make_env(project, case)
    if case.no_key:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-unused-in-these-runs")
    data_before = _snapshot(project / "data")
    assert PLANTED in {f"data/{k}" for k in data_before}

    result = _kedro_run(project, ["--env", case.name, "--pipeline", case.pipeline, *case.args], monkeypatch)

    output = result.output
    assert result.exit_code == 1, output[-3000:]
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output[-3000:]
    for part in case.expect:
        assert part in errors[0], errors[0]
    assert "Traceback" not in output and "Running node" not in output, output[-3000:]
    assert f"(full trace in {Path('logs') / 'last-error.log'})" in result.stderr
    assert _snapshot(project / "data") == data_before  # nothing written, the earlier artifact untouched


def test_concept_file_with_bom_and_blank_lines_loads_cleanly(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The positive case: a UTF-8 byte-order mark and blank lines are not concepts (CSV, TXT and JSON alike)."""
    from kedro.framework.session import KedroSession

    from axbench_kedro.datagen.concepts import concept_entries

    files = {
        "concepts.csv": "\ufeffconcept,url\n\ncats,\n\n  \ndogs,https://www.neuronpedia.org/m/l/7\n\n",
        "concepts.txt": "\ufeff\ncats\n\n   \ndogs\n\n",
        "export.json": "\ufeff\n" + _neuronpedia() + "\n\n",
    }
    monkeypatch.chdir(project)
    for name, text in files.items():
        case = Case(
            f"bom_{Path(name).suffix[1:]}", "datagen", (), globals_={"concept_list": _raw("bom", name)}
        )
        path = project / _raw("bom", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        _make_env(project, case)
        with KedroSession.create(project_path=project, env=case.name) as session:
            raw = session.load_context().catalog.load("concept_list")
        concepts = [e.concept for e in concept_entries(raw, name)]
        assert concepts == (["concept 0", "concept 1"] if name.endswith(".json") else ["cats", "dogs"]), name


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["npz", "compressed"])
def test_sae_shapes_come_from_the_array_headers(save: Callable[..., None], tmp_path: Path) -> None:
    """The run-start SAE check reads the ``.npy`` headers only, of plain and compressed archives alike."""
    from axbench_kedro.errors import AxbenchConfigError
    from axbench_kedro.methods.sae_file import check_sae_shapes, sae_shapes

    path = tmp_path / "params.npz"
    save(
        path,
        W_enc=np.zeros((4, 6)),
        b_enc=np.zeros(6),
        threshold=np.zeros(6),
        W_dec=np.zeros((6, 5)),
        b_dec=np.zeros(4),
    )
    shapes = sae_shapes(path)
    assert shapes == {"W_enc": (4, 6), "b_enc": (6,), "threshold": (6,), "W_dec": (6, 5), "b_dec": (4,)}
    with pytest.raises(AxbenchConfigError, match=r"W_dec of shape \(6, 5\), expected \(6, 4\)"):
        check_sae_shapes(shapes, path, d_model=4)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(AxbenchConfigError, match="junk.npz is not a readable .npz file"):
        sae_shapes(tmp_path / "junk.npz")
