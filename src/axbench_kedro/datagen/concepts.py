"""Concept lists (protocol §2.1) and the ``concepts_meta`` table (§1.1).

Three input shapes are read: a Neuronpedia explanations export (JSON list; the first description of each
feature index wins), a CSV with columns ``concept,url`` (a header row is optional) and a TXT file with one
concept per line. A CSV header or a JSON record may add ``rule_id``: the concept is then one of the 25 rule
concepts of the suppression study (protocol §6; an empty cell = an ordinary concept, an unknown id = an error). Selection shuffles the list with ``random.Random(seed)`` and keeps the first
``max_concepts`` (so Concept500 is a prefix of Concept16K).

Example:
    >>> entries = parse_concept_txt("cats\\n\\ndogs\\n")
    >>> [(e.concept, e.ref, e.sae_id) for e in entries]
    [('cats', 'null', -1), ('dogs', 'null', -1)]
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from axbench_kedro.errors import AxbenchDataError

__all__ = [
    "NEURONPEDIA_URL",
    "ConceptEntry",
    "sae_id_from_ref",
    "parse_neuronpedia",
    "parse_concept_csv",
    "parse_concept_txt",
    "concept_entries",
    "check_not_empty",
    "select_concepts",
    "concepts_frame",
    "concepts_meta_from_rows",
    "metadata_jsonl_lines",
    "concepts_meta_from_jsonl",
    "CONCEPTS_META_COLUMNS",
]

NEURONPEDIA_URL = "https://www.neuronpedia.org"
CONCEPTS_META_COLUMNS = ["concept_id", "concept", "ref", "sae_id", "concept_genres", "rule_id"]


@dataclass(frozen=True)
class ConceptEntry:
    """One concept of the input list.

    Attributes:
        concept: the description, stripped.
        ref: Neuronpedia feature link, or ``"null"``.
        sae_id: the feature index (last path component of ``ref``), −1 if none.
        rule_id: the rule concept this is (one of ``judges.rule_concepts.RULE_IDS``), ``None`` for an ordinary
            concept.
    """

    concept: str
    ref: str = "null"
    sae_id: int = -1
    rule_id: str | None = None


def sae_id_from_ref(ref: str | None) -> int:
    """The last path component of a feature link as an int; −1 for ``"null"``, empty or non-numeric."""
    if not ref or str(ref).strip().lower() in {"null", "none", "nan"}:
        return -1
    tail = str(ref).strip().rstrip("/").rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _rule_id(value: Any, source: str, where: str) -> str | None:
    """A checked ``rule_id`` cell: ``None`` when empty, else one of the 25 rule ids."""
    from axbench_kedro.judges.rule_concepts import RULE_IDS

    if value is None or (isinstance(value, float) and value != value):
        return None
    rule = str(value).strip()
    if rule.lower() in {"", "nan", "none", "null"}:
        return None
    if rule not in RULE_IDS:
        raise AxbenchDataError(
            f"{source}: column 'rule_id': unknown rule {rule!r} at {where}; known rules: {', '.join(RULE_IDS)}"
        )
    return rule


def _entry(concept: Any, ref: Any, source: str, where: str, rule_id: Any = None) -> ConceptEntry:
    text = "" if concept is None else str(concept).strip()
    if not text:
        raise AxbenchDataError(f"{source}: column 'concept': empty concept at {where}")
    link = "null" if ref is None or str(ref).strip() in {"", "nan"} else str(ref).strip()
    return ConceptEntry(
        concept=text, ref=link, sae_id=sae_id_from_ref(link), rule_id=_rule_id(rule_id, source, where)
    )


def parse_neuronpedia(
    records: Sequence[dict[str, Any]],
    source: str = "neuronpedia export",
    expected_source: str | None = None,
) -> list[ConceptEntry]:
    """Concepts of a Neuronpedia explanations export, first description per feature index, file order.

    Args:
        records: the decoded JSON list (objects with ``modelId``, ``layer``, ``index``, ``description``).
        source: file name used in error messages.
        expected_source: ``"{modelId}/{layer}"`` every record must match, if given.

    Raises:
        AxbenchDataError: not a list of objects, a missing key, or a record from another source.
    """
    if not isinstance(records, list):
        raise AxbenchDataError(
            f"{source}: a Neuronpedia export must be a JSON list, got {type(records).__name__}"
        )
    seen: set[str] = set()
    entries: list[ConceptEntry] = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise AxbenchDataError(f"{source}: record {i} is not an object")
        for key in ("modelId", "layer", "index", "description"):
            if key not in record:
                raise AxbenchDataError(f"{source}: column '{key}': missing in record {i}")
        path = f"{record['modelId']}/{record['layer']}"
        if expected_source is not None and path != expected_source:
            raise AxbenchDataError(
                f"{source}: column 'layer': record {i} comes from {path}, expected {expected_source} "
                "(datagen.concept_source)"
            )
        index = str(record["index"]).strip()
        if index in seen:
            continue  # several explanations of one feature: the first one wins
        seen.add(index)
        entries.append(
            _entry(
                record["description"],
                f"{NEURONPEDIA_URL}/{path}/{index}",
                source,
                f"record {i}",
                record.get("rule_id"),
            )
        )
    return entries


#: Column names that mark a CSV's first row as a header (it then needs a ``concept`` column).
_HEADER_NAMES = frozenset(
    {"concept", "concepts", "url", "link", "ref", "sae_link", "sae_id", "concept_id", "id", "index",
     "description", "explanation", "label", "name", "feature", "rule_id"}
)  # fmt: skip


def _is_url(cell: str) -> bool:
    return "://" in cell


def _looks_like_header(first: list[str], rest: list[list[str]]) -> bool:
    """A first row that names columns: a known column name, or text where the later rows hold feature links."""
    if any(cell.strip().lower() in _HEADER_NAMES for cell in first):
        return True
    second = first[1].strip() if len(first) > 1 else ""
    if not second or _is_url(second) or second.lower() in {"null", "none", "nan"}:
        return False
    later = [r[1].strip() for r in rest if len(r) > 1 and r[1].strip()]
    return bool(later) and all(_is_url(c) for c in later)


def parse_concept_csv(
    rows: pd.DataFrame | Iterable[Sequence[str]] | str, source: str = "concept csv"
) -> list[ConceptEntry]:
    """Concepts of a ``concept,url`` table (a DataFrame, raw CSV text or parsed rows; header optional).

    Without a header the first column is the concept and the second the link. A first row that names columns
    (``concept``, ``url``, ``description``, ...) is a header: its columns are taken by name and it must have a
    ``concept`` column; an optional ``rule_id`` column marks rule concepts. A UTF-8 byte-order mark in raw text is
    dropped.

    Raises:
        AxbenchDataError: a header without a ``concept`` column, an empty concept or an unknown ``rule_id`` (names
            ``source``, the value and the row).
    """
    if isinstance(rows, pd.DataFrame):
        lowered = {str(c).strip().lower(): c for c in rows.columns}
        if "concept" not in lowered:
            raise AxbenchDataError(f"{source}: column 'concept': missing (columns: {list(rows.columns)})")
        refs = rows[lowered["url"]] if "url" in lowered else [None] * len(rows)
        rules = rows[lowered["rule_id"]] if "rule_id" in lowered else [None] * len(rows)
        return [
            _entry(c, r, source, f"row {i}", rule)
            for i, (c, r, rule) in enumerate(zip(rows[lowered["concept"]], refs, rules, strict=True))
        ]
    if isinstance(rows, str):
        rows = list(csv.reader(io.StringIO(rows.removeprefix("\ufeff"))))
    parsed = [list(r) for r in rows if r and any(cell.strip() for cell in r)]
    concept_col, url_col, rule_col = 0, 1, -1
    if parsed and _looks_like_header(parsed[0], parsed[1:]):
        header = [cell.strip().lower() for cell in parsed[0]]
        if "concept" not in header:
            raise AxbenchDataError(
                f"{source}: column 'concept': missing from the header row {parsed[0]} "
                "(name the concept column `concept`, or drop the header)"
            )
        concept_col = header.index("concept")
        url_col = header.index("url") if "url" in header else -1
        rule_col = header.index("rule_id") if "rule_id" in header else -1
        parsed = parsed[1:]
    return [
        _entry(
            r[concept_col] if concept_col < len(r) else None,
            r[url_col] if 0 <= url_col < len(r) else None,
            source,
            f"row {i}",
            r[rule_col] if 0 <= rule_col < len(r) else None,
        )
        for i, r in enumerate(parsed)
    ]


def parse_concept_txt(text: str, source: str = "concept txt") -> list[ConceptEntry]:
    """One concept per non-empty line, ref ``"null"`` (a UTF-8 byte-order mark is dropped)."""
    return [ConceptEntry(line.strip()) for line in text.removeprefix("\ufeff").splitlines() if line.strip()]


def concept_entries(
    raw: Any, source: str = "concept_list", expected_source: str | None = None
) -> list[ConceptEntry]:
    """Concepts from whatever the ``concept_list`` dataset loaded.

    A list is a Neuronpedia export, a DataFrame a ``concept,url`` table, a string a TXT file; a list of
    :class:`ConceptEntry` passes through.

    Raises:
        AxbenchDataError: an unreadable list, or a list without concepts.
    """
    if isinstance(raw, list) and all(isinstance(x, ConceptEntry) for x in raw):
        entries = list(raw)
    elif isinstance(raw, list):
        entries = parse_neuronpedia(raw, source, expected_source)
    elif isinstance(raw, pd.DataFrame):
        entries = parse_concept_csv(raw, source)
    elif isinstance(raw, str):
        entries = parse_concept_txt(raw, source)
    else:
        raise AxbenchDataError(f"{source}: cannot read a concept list from {type(raw).__name__}")
    check_not_empty(entries, source)
    return entries


def check_not_empty(entries: Sequence[Any], source: str) -> None:
    """Refuse a concept list without concepts (datagen would otherwise run on nothing and succeed).

    Raises:
        AxbenchDataError: ``<source>: no concepts ...``.
    """
    if not entries:
        raise AxbenchDataError(
            f"{source}: no concepts (the concept list is empty; datagen needs at least one)"
        )


def select_concepts(
    entries: Sequence[ConceptEntry], max_concepts: int | None, seed: int = 42
) -> list[ConceptEntry]:
    """The concepts used: all in file order, or the first ``max_concepts`` of a ``Random(seed)`` shuffle."""
    chosen = list(entries)
    if max_concepts is None:
        return chosen
    random.Random(seed).shuffle(chosen)
    return chosen[:max_concepts]


def concepts_frame(
    entries: Sequence[ConceptEntry], genres: Sequence[Sequence[str]] | None = None
) -> pd.DataFrame:
    """``concepts_meta`` rows with dense ids 0..n−1 in selection order."""
    genres = [[] for _ in entries] if genres is None else genres
    return pd.DataFrame(
        {
            "concept_id": pd.Series(range(len(entries)), dtype="int64"),
            "concept": pd.Series([e.concept for e in entries], dtype=object),
            "ref": pd.Series([e.ref for e in entries], dtype=object),
            "sae_id": pd.Series([e.sae_id for e in entries], dtype="int64"),
            "concept_genres": pd.Series([list(g) for g in genres], dtype=object),
            "rule_id": pd.Series([e.rule_id for e in entries], dtype=object),
        }
    )


def concepts_meta_from_rows(
    train_data: pd.DataFrame | None, latent_eval_data: pd.DataFrame | None
) -> pd.DataFrame:
    """Derive ``concepts_meta`` from released parquet files (§1.1).

    Concept text and genre come from the positive rows of ``train_data`` (else of ``latent_eval_data``);
    ``ref``/``sae_id`` from ``latent_eval_data.sae_link/sae_id`` when present.
    """
    source = train_data if train_data is not None else latent_eval_data
    if source is None:
        raise AxbenchDataError("concepts_meta: neither train_data nor latent_eval_data was given")
    pos = source[(source["category"] == "positive") & (source["concept_id"] >= 0)]
    first = pos.drop_duplicates("concept_id").sort_values("concept_id")
    refs: dict[int, tuple[str, int]] = {}
    if latent_eval_data is not None and {"sae_link", "sae_id"} <= set(latent_eval_data.columns):
        lat = latent_eval_data[latent_eval_data["concept_id"] >= 0].drop_duplicates("concept_id")
        for cid, link, sid in zip(lat["concept_id"], lat["sae_link"], lat["sae_id"], strict=True):
            link = "null" if link is None or str(link) in {"", "nan", "None"} else str(link)
            refs[int(cid)] = (link, int(sid) if pd.notna(sid) else sae_id_from_ref(link))
    rows = []
    for cid, concept, genre in zip(
        first["concept_id"], first["output_concept"], first["concept_genre"], strict=True
    ):
        link, sid = refs.get(int(cid), ("null", -1))
        rows.append((int(cid), str(concept).strip(), link, sid, [str(genre)], None))
    return _meta_frame(rows)


def _meta_frame(rows: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    """``concepts_meta`` from row tuples (``rule_id`` kept as objects: ``None`` stays ``None``)."""
    frame = pd.DataFrame(rows, columns=CONCEPTS_META_COLUMNS).astype(
        {"concept_id": "int64", "sae_id": "int64"}
    )
    frame["rule_id"] = pd.Series([r[-1] for r in rows], index=frame.index, dtype=object)
    return frame


def metadata_jsonl_lines(meta: pd.DataFrame) -> list[str]:
    """Upstream ``metadata.jsonl`` lines of a ``concepts_meta`` frame (``rule_id`` only on rule concepts)."""
    lines = []
    for row in meta.to_dict("records"):
        obj = {
            "concept_id": int(row["concept_id"]),
            "concept": row["concept"],
            "ref": row["ref"],
            "concept_genres_map": {row["concept"]: list(row["concept_genres"])},
        }
        rule = row.get("rule_id")
        if isinstance(rule, str) and rule:
            obj["rule_id"] = rule
        lines.append(json.dumps(obj))
    return lines


def concepts_meta_from_jsonl(lines: Iterable[str], source: str = "metadata.jsonl") -> pd.DataFrame:
    """``concepts_meta`` from upstream ``metadata.jsonl`` lines."""
    rows = []
    for i, line in enumerate(x for x in lines if x.strip()):
        try:
            obj = json.loads(line)
            concept = str(obj["concept"]).strip()
            genres = obj.get("concept_genres_map", {}).get(obj["concept"], ["text"])
            rows.append(
                (
                    int(obj["concept_id"]),
                    concept,
                    str(obj.get("ref", "null")),
                    sae_id_from_ref(obj.get("ref")),
                    list(genres),
                    _rule_id(obj.get("rule_id"), source, f"line {i + 1}"),
                )
            )
        except AxbenchDataError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise AxbenchDataError(f"{source}: line {i + 1}: {exc}") from exc
    return _meta_frame(rows)
