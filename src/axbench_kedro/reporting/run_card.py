"""The run card (protocol §1.17): a Markdown record of what produced a report.

Model, layer, setting, judge (kind, model, temperature, parse rule, template hashes), the Prompt baseline's P1 call
(its token cap, labelled when set, and the replies cut at it [D 31]), PromptDetection's rater and its 1:100 opt-in
[D 32], method notes (each method's own
:attr:`~axbench_kedro.methods.base.Method.report_note`, e.g. the Probe's loss form [D 33]), the SAE methods' steering
magnitudes (Neuronpedia table or AxBench max-act fallback [D 13]), concepts, seeds, package
versions, git commit, LLM calls/tokens/cost per pipeline stage, wall time per pipeline and the other settings'
result versions the report read. Secrets never enter it: only named, non-secret fields are written, URLs lose their
credentials and query strings, and a final pass blanks anything that looks like an API key or equals the value of a
secret-looking environment variable.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from axbench_kedro.reporting.detection_rater import detection_rater_section
from axbench_kedro.reporting.magnitudes import magnitudes_section
from axbench_kedro.reporting.markdown import MISSING, fmt_number, frame_to_markdown, markdown_table
from axbench_kedro.reporting.roles import control_note, method_label
from axbench_kedro.reporting.suppression import run_card_section as suppression_section
from axbench_kedro.reporting.tables import fresh_judgements

__all__ = [
    "DEFAULT_PACKAGES",
    "collect_provenance",
    "normalise_timings",
    "redact",
    "render_run_card",
    "safe_url",
]

DEFAULT_PACKAGES = (
    "axbench-kedro",
    "kedro",
    "kedro-datasets",
    "kedro-viz",
    "torch",
    "transformers",
    "pyvene",
    "openai",
    "sentence-transformers",
    "scikit-learn",
    "pandas",
    "numpy",
    "pyarrow",
    "matplotlib",
    "pydantic",
)
REDACTED = "[redacted]"
_KEY_PATTERNS = (
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),  # OpenAI-style keys
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._\-]{8,}"),
    re.compile(r"hf_[A-Za-z0-9]{16,}"),  # Hugging Face tokens
)
_SECRET_ENV = re.compile(r"(?i)(key|token|secret|password|passwd|credential)")
_MODEL_FIELDS = ("source", "name_or_path", "gguf_file", "dtype", "device")


def collect_provenance(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """Python, platform, package versions and git state of the running code.

    Args:
        packages: distribution names whose versions are recorded.

    Returns:
        ``{"python", "platform", "packages": {name: version}, "git_commit", "git_dirty", "kedro_env",
        "generated_at"}``; unknown values are ``"n/a"``.
    """
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    commit, dirty = _git_state(Path(__file__).resolve().parent)
    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "packages": versions,
        "git_commit": commit,
        "git_dirty": dirty,
        "kedro_env": os.environ.get("KEDRO_ENV") or "n/a",
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _git_state(folder: Path) -> tuple[str, str]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=15, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        inside = git("rev-parse", "--is-inside-work-tree")
        return ("n/a (no commit yet)" if inside == "true" else "n/a (not a git checkout)", "n/a")
    status = git("status", "--porcelain", "--untracked-files=no")
    return (commit, "n/a" if status is None else ("yes" if status else "no"))


def safe_url(url: Any) -> str:
    """A URL without user info, query string or fragment (``None``/empty → ``n/a``)."""
    if url is None or str(url).strip() == "":
        return "n/a"
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")) if parts.scheme else REDACTED


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Blank API-key-like strings and the values of secret-looking environment variables.

    Args:
        text: the document.
        environ: environment to scan (default ``os.environ``); values of variables whose name contains KEY,
            TOKEN, SECRET, PASSWORD or CREDENTIAL (and are at least 8 characters long) are removed.

    Returns:
        The text with every match replaced by ``[redacted]``.
    """
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if value and len(value) >= 8 and _SECRET_ENV.search(name) and value in text:
            text = text.replace(value, REDACTED)
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def normalise_timings(timings: Any) -> pd.DataFrame:
    """Wall time per pipeline from the ``pipeline_timings`` record.

    Accepts ``{pipeline: wall_s}``, ``{pipeline: {"wall_s": ...}}``, a list of ``{"pipeline", "wall_s"}`` records
    or a frame with those columns; ``None`` → empty.

    Returns:
        ``pipeline, wall_s``.
    """
    columns = ["pipeline", "wall_s"]
    if timings is None:
        return pd.DataFrame(columns=columns)
    if isinstance(timings, pd.DataFrame):
        frame = timings
    elif isinstance(timings, Mapping):
        rows = []
        for name, value in timings.items():
            wall = value.get("wall_s") if isinstance(value, Mapping) else value
            rows.append({"pipeline": str(name), "wall_s": wall})
        frame = pd.DataFrame(rows, columns=columns)
    else:
        frame = pd.DataFrame(list(timings))
    if frame.empty or not set(columns) <= set(frame.columns):
        return pd.DataFrame(columns=columns)
    frame = frame[columns].assign(wall_s=pd.to_numeric(frame["wall_s"], errors="coerce"))
    return frame.drop_duplicates("pipeline", keep="last").reset_index(drop=True)


def _unique(frame: pd.DataFrame | None, column: str) -> list[Any]:
    if frame is None or frame.empty or column not in frame.columns:
        return []
    values = frame[column].dropna().unique().tolist()
    try:
        return sorted(values)
    except TypeError:
        return values


def _listing(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values) if values else "n/a"


def _judge_section(judge: Mapping[str, Any], judgements: pd.DataFrame | None) -> list[str]:
    lines = ["## Judge", ""]
    rows = [
        ["kind (configured)", str(judge.get("kind", "n/a"))],
        ["model (configured)", str(judge.get("model", "n/a"))],
        ["backend (configured)", str(judge.get("backend", "n/a"))],
        ["base URL", safe_url(judge.get("base_url"))],
        ["kinds in judgements", _listing(_unique(judgements, "judge_kind"))],
        ["models in judgements", _listing(_unique(judgements, "judge_model"))],
        ["temperatures", _listing(_unique(judgements, "temperature"))],
        ["parse rules", _listing(_unique(judgements, "parse_rule"))],
        ["judgements", str(0 if judgements is None else len(judgements))],
    ]
    fresh = fresh_judgements(judgements) if judgements is not None else None
    if fresh is not None and "parse_ok" in fresh.columns and len(fresh):
        failures = int((~fresh["parse_ok"].astype(bool)).sum())
        rows.append(
            ["unparsable replies (scored 0)", f"{failures} of {len(fresh)} ({failures / len(fresh):.2%})"]
        )
    lines += [markdown_table(["field", "value"], rows), ""]
    kinds = set(_unique(judgements, "judge_kind")) | {str(judge.get("kind", ""))}
    if "proxy" in kinds:
        lines += [
            "**Proxy judge**: the offline stand-in for the LLM judge. Its numbers are not comparable with AxBench's.",
            "",
        ]
    if judgements is not None and {"criterion", "template_sha256"} <= set(judgements.columns):
        hashes = (
            judgements[["criterion", "template_sha256"]].dropna().drop_duplicates().sort_values(["criterion"])
        )
        lines += ["Template SHA-256 per criterion:", "", frame_to_markdown(hashes.reset_index(drop=True)), ""]
    return lines


def _prompt_steering_section(texts: pd.DataFrame | None) -> list[str]:
    """The P1 call: its cap (labelled when set) and the replies cut at it (finish reason ``length``) [D 31]."""
    lines = ["## Prompt baseline instruction (P1)", ""]
    if texts is None or texts.empty:
        return [*lines, "n/a (no prompt_steering_texts)", ""]
    rows = [["replies", str(len(texts))]]
    if "is_fallback" in texts.columns:
        rows.append(["empty replies (fallback used)", str(int(texts["is_fallback"].astype(bool).sum()))])
    caps = [int(c) for c in pd.unique(texts["max_tokens"].dropna())] if "max_tokens" in texts.columns else []
    if "max_tokens" not in texts.columns:
        rows.append(["max_tokens", "n/a (not recorded)"])
    else:
        rows.append(["max_tokens", _listing(sorted(caps)) if caps else "none (no cap, as upstream)"])
    if "finish_reason" in texts.columns:
        reasons = texts["finish_reason"].astype(object).where(texts["finish_reason"].notna(), "unknown")
        cut = (
            texts.loc[reasons == "length", "concept_id"].astype(int).tolist() if "concept_id" in texts else []
        )
        listed = f": concept_id {_listing(cut[:20])}{' …' if len(cut) > 20 else ''}" if cut else ""
        rows.append(["cut at the token cap (finish reason length)", f"{len(cut)} of {len(texts)}{listed}"])
        n_unknown = int((reasons == "unknown").sum())
        if n_unknown:
            rows.append(["finish reason unknown (backend or old cache)", str(n_unknown)])
    else:
        rows.append(["cut at the token cap (finish reason length)", "n/a (not recorded)"])
    lines += [markdown_table(["field", "value"], rows), ""]
    if caps:
        lines += [
            f"**Capped P1 replies**: the steering-instruction call ran with max_tokens = {_listing(sorted(caps))} "
            "(upstream sets no cap; protocol D31). Replies cut at the cap were kept as they are.",
            "",
        ]
    return lines


def _method_notes_section(methods: Iterable[str]) -> list[str]:
    """One line per method of the report that declares a :attr:`Method.report_note` (looked up in the registry)."""
    from axbench_kedro.methods.registry import method_note

    notes = [(m, method_note(m)) for m in methods]
    notes = [(m, n) for m, n in notes if n]
    if not notes:
        return []
    return ["## Method notes", "", *[f"- **{method_label(m)}**: {n}" for m, n in notes], ""]


def _source_files_section(training_summary: pd.DataFrame | None) -> list[str]:
    """One line per file a method read its rows from (``training_summary.source_files``), with its SHA-256."""
    if training_summary is None or "source_files" not in training_summary.columns:
        return []
    lines = []
    for rec in training_summary.to_dict("records"):
        files = rec["source_files"] if isinstance(rec["source_files"], str) else ""
        lines += [
            f"- **{method_label(rec['method'])}**: `{f.strip()}`" for f in files.split(";") if f.strip()
        ]
    return ["## Method source files", "", *lines, ""] if lines else []


def render_run_card(
    *,
    setting: str,
    layer: int,
    seed: int,
    model: Mapping[str, Any],
    generator: Mapping[str, Any],
    judge: Mapping[str, Any],
    provenance: Mapping[str, Any],
    concepts_meta: pd.DataFrame | None = None,
    judgements: pd.DataFrame | None = None,
    usage: pd.DataFrame | None = None,
    timings: pd.DataFrame | None = None,
    sources: pd.DataFrame | None = None,
    methods: Iterable[str] = (),
    max_listed_concepts: int = 20,
    prompt_steering_texts: pd.DataFrame | None = None,
    magnitudes: pd.DataFrame | None = None,
    detection_usage: pd.DataFrame | None = None,
    suppression_board: pd.DataFrame | None = None,
    suppression_attacks: pd.DataFrame | None = None,
    suppression_sources: pd.DataFrame | None = None,
    training_summary: pd.DataFrame | None = None,
) -> str:
    """Render the run card as Markdown (already passed through ``redact``).

    Args:
        setting, layer, seed: ``params:run``.
        model, generator, judge: the ``globals`` blocks of this environment (only named fields are shown).
        provenance: output of ``collect_provenance``.
        concepts_meta: ``concepts_meta`` (§1.1).
        judgements: ``judgements`` (§1.12): judge kinds/models/temperatures, template hashes, parse failures, seeds.
        usage: LLM ledger (``tables.llm_usage``: per stage + total).
        timings: ``pipeline, wall_s`` (``normalise_timings``); empty → ``n/a``; ``None`` leaves the section out
            (the pipelines' wall times are logged by the project hooks at the end of each run, outside the graph).
        sources: the other settings' result files read (``results_across_settings``' ``sources``).
        methods: methods present in the report (controls listed as ``<name> (control)``); each one's registered
            ``report_note`` is printed under "Method notes".
        max_listed_concepts: concepts listed by name.
        prompt_steering_texts: the P1 replies (``max_tokens``, ``finish_reason``): the cap and the cut replies.
        magnitudes: ``reporting.magnitudes.magnitude_rows`` of the leaderboard: one line per SAE method and setting
            naming its Neuronpedia table or the AxBench max-act fallback [D 13].
        detection_usage: ``latent_eval_llm_usage``: PromptDetection's rater (model, backend, temperature, top-k,
            max new tokens, template hash) and its 1:100 opt-in with size and estimate [D 32].
        suppression_board: this setting's suppression leaderboard rows (``reporting.suppression``); empty → the
            "Suppression" section says it was not run and gives the command; ``None`` leaves the section out.
        suppression_attacks: this setting's attack table (``reporting.suppression.attack_table``).
        suppression_sources: the suppression files read (``setting, dataset, version``), named in the section.
        training_summary: ``training_summary``; its ``source_files`` (e.g. a released dictionary's files with their
            SHA-256, protocol §3.16) are listed under "Method source files".

    Returns:
        The Markdown document.
    """
    lines = [f"# Run card: {setting}", "", f"Generated {provenance.get('generated_at', 'n/a')}.", ""]
    gguf = model.get("gguf_file")
    shown = sorted(set(methods))
    run_rows = [
        ["setting (Kedro env)", setting],
        ["KEDRO_ENV variable", str(provenance.get("kedro_env", "n/a"))],
        ["layer", str(layer)],
        ["run seed", str(seed)],
        *[
            [f"model {key}", str(model.get(key)) if model.get(key) is not None else "n/a"]
            for key in _MODEL_FIELDS
        ],
        ["generator", f"{generator.get('backend', 'n/a')} / {generator.get('model', 'n/a')}"],
        ["generator base URL", safe_url(generator.get("base_url"))],
        ["methods", _listing([method_label(m) for m in shown])],
    ]
    if gguf is None:
        run_rows = [r for r in run_rows if r[0] != "model gguf_file"]
    lines += ["## Run", "", markdown_table(["field", "value"], run_rows), *control_note(shown), ""]
    lines += _judge_section(judge, judgements)
    lines += _prompt_steering_section(prompt_steering_texts)
    lines += detection_rater_section(detection_usage)
    lines += _method_notes_section(shown)
    lines += magnitudes_section(magnitudes)
    lines += _source_files_section(training_summary)
    if suppression_board is not None:
        lines += suppression_section(
            suppression_board, suppression_attacks, setting=setting, sources=suppression_sources
        )

    lines += ["## Concepts", ""]
    if concepts_meta is None or concepts_meta.empty:
        lines += ["n/a", ""]
    else:
        meta = concepts_meta.sort_values("concept_id") if "concept_id" in concepts_meta else concepts_meta
        lines += [f"{len(meta)} concepts.", ""]
        for row in meta.head(max_listed_concepts).itertuples(index=False):
            lines.append(f"- {getattr(row, 'concept_id', '?')}: {getattr(row, 'concept', '')}")
        if len(meta) > max_listed_concepts:
            lines.append(f"- … and {len(meta) - max_listed_concepts} more")
        lines.append("")

    seeds = _unique(judgements, "seed")
    seed_text = _listing(seeds) if len(seeds) <= 10 else f"{len(seeds)} values, {seeds[0]} … {seeds[-1]}"
    lines += ["## Seeds", "", f"- run seed: {seed}", f"- generation seeds in judgements: {seed_text}", ""]

    lines += ["## LLM calls and cost", ""]
    lines += [
        frame_to_markdown(usage, digits=4) if usage is not None and not usage.empty else "n/a (no ledger)",
        "",
    ]

    if timings is None:
        pass
    elif timings.empty:
        lines += ["## Wall time per pipeline", "", "n/a", ""]
    else:
        lines += ["## Wall time per pipeline", ""]
        rows = [[str(r.pipeline), f"{fmt_number(r.wall_s, 1)} s"] for r in timings.itertuples(index=False)]
        lines += [markdown_table(["pipeline", "wall time"], rows, [False, True]), ""]

    lines += ["## Results read from other settings", ""]
    if sources is None or sources.empty:
        lines += ["none (this report covers the current setting only)", ""]
    else:
        lines += [frame_to_markdown(sources[["setting", "dataset", "version"]].reset_index(drop=True)), ""]

    packages = provenance.get("packages", {}) or {}
    lines += [
        "## Software",
        "",
        f"- git commit: {provenance.get('git_commit', 'n/a')} (uncommitted changes: {provenance.get('git_dirty', 'n/a')})",
        f"- Python {provenance.get('python', 'n/a')} on {provenance.get('platform', 'n/a')}",
        "",
        markdown_table(["package", "version"], [[k, str(v)] for k, v in packages.items()])
        if packages
        else MISSING,
        "",
    ]
    return redact("\n".join(lines))
