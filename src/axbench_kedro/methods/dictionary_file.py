"""Released AxBench dictionaries on disk (protocol §3.16): reading, checks, and matching concepts to rows.

A dictionary folder (``<root>/<folder>/l<L>/``) holds the released layout — ``weight.pt`` (one pickled tensor
``[n, d]``), ``metadata.jsonl`` (one object per row: ``concept_id`` = row index, ``concept``, ``ref``, …) and an
optional ``acts.json`` (``{"thresholds": {id: float}, "max_act": {id: float}}``) — or the trainer-side names
``<Method>_weight.pt`` (+ ``<Method>_bias.pt``). Nothing here contacts a hub. A neutral module: the registry methods
live in :mod:`axbench_kedro.methods.dictionary`, the catalog entry in :mod:`axbench_kedro.datasets.dictionaries`.

Example:
    >>> feature_path("https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/1234")
    'gemma-2-2b/20-gemmascope-res-16k/1234'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError

__all__ = [
    "DictionaryRow",
    "DictionaryMatch",
    "ReleasedDictionary",
    "DictionarySource",
    "feature_path",
    "read_metadata",
    "load_weight",
    "match_concepts",
]

MatchOn = Literal["concept", "concept_id"]
_WEIGHT_NAMES = ("weight.pt", "LsReFT_weight.pt", "DiffMean_weight.pt")
_BIAS_NAMES = ("bias.pt", "LsReFT_bias.pt", "DiffMean_bias.pt")


def feature_path(ref: Any) -> str | None:
    """``{model}/{sae}/{index}`` of a Neuronpedia feature link (its last three path parts), ``None`` without one."""
    text = str(ref or "").strip().rstrip("/")
    if not text or text.lower() in ("null", "none", "nan"):
        return None
    parts = [p for p in text.split("?")[0].split("/") if p]
    return "/".join(parts[-3:]) if len(parts) >= 3 else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class DictionaryRow:
    """One line of ``metadata.jsonl`` (row ``row`` of the weight)."""

    row: int
    concept: str
    ref: str | None


def read_metadata(path: Path) -> list[DictionaryRow]:
    """The rows of ``metadata.jsonl``; ``AxbenchDataError`` when a line is not JSON or ``concept_id`` ≠ its index."""
    rows: list[DictionaryRow] = []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AxbenchDataError(f"{path}: line {i + 1} is not JSON ({exc.msg})") from None
        if int(obj.get("concept_id", -1)) != i:
            raise AxbenchDataError(
                f"{path}: line {i + 1} has concept_id {obj.get('concept_id')!r}, expected {i}"
            )
        rows.append(DictionaryRow(i, str(obj.get("concept", "")).strip(), feature_path(obj.get("ref"))))
    return rows


def load_weight(path: Path) -> torch.Tensor:
    """The 2-D weight of ``path`` as float32 (restricted unpickler: one tensor, nothing else)."""
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle the restricted unpickler refuses, or a broken file
        raise AxbenchDataError(
            f"{path}: not a tensor file torch.load(weights_only=True) accepts ({exc})"
        ) from None
    if not isinstance(value, torch.Tensor):
        raise AxbenchDataError(f"{path}: holds a {type(value).__name__}, expected one tensor")
    return value.float()


@dataclass(frozen=True)
class DictionaryMatch:
    """The dictionary row of each concept (``rows[i]`` for ``concept_ids[i]``) and the ties resolved."""

    concept_ids: tuple[int, ...]
    rows: tuple[int, ...]
    duplicate_rows: tuple[int, ...]


def match_concepts(
    rows: Sequence[DictionaryRow],
    concepts: Sequence[tuple[int, str, str | None]],
    match_on: MatchOn,
    name: str,
) -> DictionaryMatch:
    """Match ``(concept_id, concept, ref feature path)`` triples to dictionary rows (protocol §3.16).

    ``concept``: rows whose stripped text equals the concept's; among several, those with the concept's ``ref``
    feature path; then the lowest (counted in ``duplicate_rows``). ``concept_id``: row = id, whose text must equal.

    Raises:
        AxbenchDataError: concepts without a row (every one listed, first 20, with the ids to restrict the run to),
            or a ``concept_id`` row whose text differs.
    """
    by_text: dict[str, list[DictionaryRow]] = {}
    for r in rows:
        by_text.setdefault(r.concept, []).append(r)
    found: list[int] = []
    dups: list[int] = []
    missing: list[tuple[int, str]] = []
    for cid, text, ref in concepts:
        text = str(text).strip()
        if match_on == "concept_id":
            if not 0 <= cid < len(rows):
                missing.append((cid, text))
                continue
            if rows[cid].concept != text:
                raise AxbenchDataError(
                    f"dictionary {name}: row {cid} is {rows[cid].concept!r} but concept_id {cid} is {text!r} "
                    "(match_on: concept_id needs a dictionary trained on this concept list; use match_on: concept)"
                )
            found.append(cid)
            dups.append(0)
            continue
        hits = by_text.get(text, [])
        if not hits:
            missing.append((cid, text))
            continue
        if len(hits) > 1 and ref is not None:
            hits = [h for h in hits if h.ref == ref] or hits
        found.append(min(h.row for h in hits))
        dups.append(len(hits) - 1)
    if missing:
        listed = "; ".join(f"{cid}: {text!r}" for cid, text in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        matched = [cid for cid, _, _ in concepts if cid not in {m for m, _ in missing}]
        raise AxbenchDataError(
            f"dictionary {name}: {len(missing)} concept(s) have no row (match_on: {match_on}): {listed}{more}. "
            f"Every method is scored on the same concepts; to run anyway restrict the run to concept_ids: {matched}"
        )
    return DictionaryMatch(tuple(c for c, _, _ in concepts), tuple(found), tuple(dups))


@dataclass
class ReleasedDictionary:
    """A checked dictionary: weight ``[n, d]`` (float32, not renormalised), optional bias ``[n]``, row metadata,
    the released ``max_act`` / ``thresholds`` tables (row → value) and the SHA-256 of every file read."""

    folder: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    rows: list[DictionaryRow]
    max_act: dict[int, float]
    thresholds: dict[int, float]
    sha256: dict[str, str]


def _first(folder: Path, names: Sequence[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _acts_table(path: Path, n: int) -> tuple[dict[int, float], dict[int, float]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    out: list[dict[int, float]] = []
    for key in ("max_act", "thresholds"):
        table = {int(k): float(v) for k, v in dict(raw.get(key) or {}).items()}
        bad = sorted(k for k in table if not 0 <= k < n)
        if bad:
            raise AxbenchDataError(f"{path}: {key} has id(s) {bad[:10]} outside the {n} rows")
        out.append(table)
    return out[0], out[1]


@dataclass
class DictionarySource:
    """What the ``released_dictionaries`` catalog entry hands the training node: a root folder that may be absent.

    A dictionary lives in ``<root>/<folder>/l<layer>/``; files are read on first use and memoized.
    """

    root: str | None
    _metadata: dict[str, list[DictionaryRow]] = field(default_factory=dict, repr=False)
    _loaded: dict[tuple[str, int], ReleasedDictionary] = field(default_factory=dict, repr=False)
    _hashes: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def folder(self, name: str, layer: int) -> Path | None:
        return None if self.root is None else Path(self.root) / name / f"l{layer}"

    def missing_reason(self, name: str, layer: int) -> str | None:
        """Why the dictionary ``name`` at ``layer`` cannot be read, or ``None`` when its files are there."""
        where = self.folder(name, layer)
        if where is None:
            return "no dictionary folder (catalog entry `released_dictionaries`: no path configured)"
        if _first(where, _WEIGHT_NAMES) is None or not (where / "metadata.jsonl").is_file():
            return f"no released dictionary at {where} (needs weight.pt and metadata.jsonl; catalog entry `released_dictionaries`)"
        return None

    def identity(self, name: str, layer: int) -> dict[str, str] | None:
        """SHA-256 of the files (part of the training cache key: a rewritten but equal file still hits), ``None``
        when absent."""
        if self.missing_reason(name, layer):
            return None
        return self.sha256(name, layer)

    def sha256(self, name: str, layer: int) -> dict[str, str]:
        """SHA-256 of every dictionary file in the folder (memoized; the weight is not unpickled)."""
        key = f"{name}/l{layer}"
        if key not in self._hashes:
            where = self.folder(name, layer)
            assert where is not None
            files = sorted(
                p for p in where.iterdir() if p.is_file() and p.suffix in (".pt", ".jsonl", ".json")
            )
            self._hashes[key] = {p.name: _sha256(p) for p in files}
        return self._hashes[key]

    def metadata(self, name: str, layer: int) -> list[DictionaryRow]:
        """The checked ``metadata.jsonl`` rows (no weight read)."""
        key = f"{name}/l{layer}"
        if key not in self._metadata:
            reason = self.missing_reason(name, layer)
            if reason:
                raise AxbenchConfigError(reason)
            self._metadata[key] = read_metadata(self.folder(name, layer) / "metadata.jsonl")  # type: ignore[operator]
        return self._metadata[key]

    def load(self, name: str, layer: int, d_model: int | None = None) -> ReleasedDictionary:
        """The checked dictionary (errors name the file and the field, protocol §3.16)."""
        key = (name, layer)
        if key not in self._loaded:
            rows = self.metadata(name, layer)
            where = self.folder(name, layer)
            assert where is not None
            weight_file = _first(where, _WEIGHT_NAMES)
            assert weight_file is not None
            weight = load_weight(weight_file)
            if weight.dim() != 2:
                raise AxbenchDataError(
                    f"{weight_file}: weight has shape {tuple(weight.shape)}, expected [n, d]"
                )
            n, d = weight.shape
            if d_model is not None and d != d_model:
                raise AxbenchDataError(
                    f"{weight_file}: width d={d} but the target model's hidden size is {d_model}"
                )
            if len(rows) != n:
                raise AxbenchDataError(
                    f"{where / 'metadata.jsonl'}: {len(rows)} lines but {weight_file} has {n} rows"
                )
            bias = None
            bias_file = _first(where, _BIAS_NAMES)
            if bias_file is not None:
                bias = load_weight(bias_file).reshape(-1)
                if bias.numel() != n:
                    raise AxbenchDataError(
                        f"{bias_file}: {bias.numel()} values but {weight_file} has {n} rows"
                    )
            max_act: dict[int, float] = {}
            thresholds: dict[int, float] = {}
            if (where / "acts.json").is_file():
                max_act, thresholds = _acts_table(where / "acts.json", n)
            self._loaded[key] = ReleasedDictionary(
                folder=str(where),
                weight=weight,
                bias=bias,
                rows=rows,
                max_act=max_act,
                thresholds=thresholds,
                sha256=self.sha256(name, layer),
            )
        return self._loaded[key]

    def __getstate__(self) -> Mapping[str, Any]:
        # a pickled source (Dask workers) carries the path only and reads the files again there
        return {"root": self.root, "_metadata": {}, "_loaded": {}, "_hashes": {}}
