"""The deterministic rule judge (protocol §6): a 0–2 rating per rule concept, no LLM, no network.

For a rule concept it replaces J1: suppression and attacks score HM(instruction, fluency, 2 − rule), steering toward
the rule HM(instruction, fluency, rule). Rows follow ``judgements`` (§1.12) with ``criterion = "rule"``,
``judge_kind = "rule"``, ``parse_ok`` True and a short explanation as ``raw_completion``.

Graded rules (§6):

* ``all_capital`` / ``all_lowercase``: 2 × share of the whitespace-separated words that are upper / lower case. Only
  words with a cased letter count (numbers, emoji and CJK words are left out of the share; upstream counted them as
  failures).
* ``quoted_words``: 2 × share of the words (tokens holding a letter or digit) wrapped in double quotes (straight or
  curly; punctuation may follow the closing quote).
* ``emoji``: more than ``emoji_full_above`` (2) emoji → 2, at least one → 1. Emoji are counted by code point over the
  Unicode pictograph blocks (U+1F000–1FAFF, U+2600–27BF and the other emoji-presentation symbols); a flag (two
  regional indicators) counts once and skin-tone modifiers not at all. ©, ® and ™ do not count.
* ``hashtags``: 2 × count / ``hashtags_full`` (4), capped at 2. A hashtag is ``#`` + word characters with at least one
  letter, not preceded by a word character, ``&``, ``/`` or ``#`` (so ``C#``, ``&#39;``, URL anchors, ``#1`` and
  Markdown headings do not count).
* ``exclamation``: ``exclamation_step`` (0.5) per ``!`` or full-width ``！``, capped at 2.
* ``start_phrase`` (``Here is my response``) / ``help_phrase`` (``Is there anything else I can help with?``): 2 when
  the text starts / ends with the phrase, 1 when it holds it elsewhere. Matching ignores case, runs of whitespace,
  leading/trailing quotes and Markdown emphasis and the phrase's own final punctuation.
* ``keyword``: 2 × share of ``keywords`` (``beauty``, ``pretty``) found as whole words, any case.

Binary rules (2 or 0):

* ``chinese`` / ``spanish``: ``langdetect`` (language profiles shipped in the package, seeded → deterministic) returns one of
  ``chinese_codes`` (``zh-cn``) / ``spanish_codes`` (``es``). Traditional Chinese (``zh-tw``) fails, as upstream;
  ``langdetect`` sometimes reads a one-clause CJK text as Korean.
* ``korean``: only Hangul syllables, whitespace and ``.,!?``, with at least one syllable.
* ``word_limit_min``: at least ``min_words`` (800) ``\\w+`` tokens.
* ``postscript``: a line starting with ``P.S.`` (after optional Markdown markers).
* ``json_format``: the text parses as JSON after removing a leading fence (```` ``` ```` with optional language tag)
  and a trailing fence [D 25: 2.0, not upstream's boolean]. Any JSON value counts, as in the protocol.
* ``numbered_list``: a line starting with ``1.``-style or ``1)``-style numbering followed by text (upstream matched
  any ``digits.`` anywhere, so a year closing a sentence passed).
* ``double_breaks``: a blank line between two non-blank lines.
* ``asterisk_sep``: the text holds ``***``.
* ``citations``: a URL: ``http(s)://`` + a dotted host, or ``www.`` + a dotted host.
* ``same_letter_ending``: every sentence (text split on ``.!?。！？``; pieces without letters skipped) ends, at its
  last letter, with ``ending_letter`` (``y``); no sentence → 0.
* ``email``: an address ``local@domain.tld``.
* ``telephone_number``: at least ``min_phone_numbers`` (1) numbers in a North-American ((123) 456-7890,
  123-456-7890, +1 123 456 7890), international (+44 20 7946 0958, 8–15 digits), local (555-1234) or vanity
  (1-800-FLOWERS) format; dates and year ranges do not match.
* ``date_format``: a ``YYYY-MM-DD`` date with month 01–12 and day 01–31.
* ``past_tense``: a past-tense verb, found by a word-list heuristic (no NLP model): a finite irregular past form
  (was, were, had, did, went, …) anywhere, or a regular ``-ed`` word / an irregular form shared with the participle
  (made, said, …) right after a subject pronoun (I, you, he, she, it, we, they, who), up to two adverbs between.
  Misses ``The team worked hard`` (no pronoun); never fires on ``it is based on``.
* ``passive_voice``: a form of *be* (am, is, are, was, were, be, been, being, ’re, ’m and their negations), up to two
  adverbs, then a past participle (a regular ``-ed`` word or a listed irregular one). Common adjectival ``-ed`` words
  (interested, tired, related, …) and non-verbs ending in ``ed`` (need, red, hundred, …) are excluded; *get*
  passives are not detected.

Every parameter sits in :class:`RuleJudgeParams`; its SHA-256 (with the rule version) is ``template_sha256``.

Example:
    >>> judge = RuleJudge()
    >>> judge.score("all_capital", "HELLO WORLD")
    2.0
    >>> judge.judge("hashtags", ["#one #two", ""])["rating"].tolist()
    [1.0, 0.0]
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any, ClassVar

import pandas as pd
from pydantic import Field, field_validator

from axbench_kedro.cache import content_key
from axbench_kedro.config.common import StrictModel
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.judges.base import JUDGEMENT_COLUMNS, RATING_COLUMNS, judgement_frame
from axbench_kedro.judges.rule_concepts import RULE_IDS, check_rule_id
from axbench_kedro.metrics.steering import GENERATION_KEYS

__all__ = [
    "RULE_JUDGE_VERSION",
    "RULE_CRITERION",
    "RULE_ROW_COLUMNS",
    "PastTenseParams",
    "PassiveVoiceParams",
    "RuleJudgeParams",
    "RuleResult",
    "RuleJudge",
]

#: Version of the rule checks, stored as ``parse_rule``.
RULE_JUDGE_VERSION = "rules-v1"
#: The ``criterion`` of every rule judgement.
RULE_CRITERION = "rule"
#: Columns of :meth:`RuleJudge.judge` (one row per text, in input order).
RULE_ROW_COLUMNS = [
    "rule_id",
    *(c for c in JUDGEMENT_COLUMNS if c not in GENERATION_KEYS and c != "replica"),
]

_SUBJECTS = ["i", "you", "he", "she", "it", "we", "they", "who"]
_ADVERBS = [
    "not", "never", "also", "just", "then", "once", "still", "already", "soon", "often", "always", "usually",
    "well", "even", "only", "first", "finally", "really", "all",
]  # fmt: skip
_FINITE_PAST = [
    "was", "were", "had", "did", "went", "came", "saw", "began", "became", "ate", "drank", "drove", "flew", "gave",
    "grew", "knew", "ran", "rang", "rose", "sang", "sank", "shook", "spoke", "stole", "swam", "threw", "took",
    "woke", "wore", "wrote", "broke", "chose", "drew", "fell", "forgot", "froze", "rode", "hid", "blew", "swore",
    "tore", "sprang", "wasn't", "weren't", "didn't", "hadn't",
]  # fmt: skip
_SHARED_PAST = [
    "made", "said", "found", "thought", "told", "felt", "kept", "held", "brought", "built", "bought", "caught",
    "taught", "fought", "sent", "spent", "lost", "meant", "paid", "sold", "stood", "understood", "heard", "won",
    "led", "met", "sat", "slept", "got", "left", "sought", "fled", "struck", "hung", "lay",
]  # fmt: skip
_NON_VERB_ED = [
    "need", "feed", "seed", "speed", "breed", "bleed", "deed", "weed", "greed", "creed", "heed", "reed", "steed",
    "tweed", "indeed", "proceed", "succeed", "exceed", "bed", "red", "shed", "hundred", "sacred", "naked",
    "wicked", "kindred", "rugged", "beloved", "embed", "infrared", "unwed", "bred", "sled", "fred", "ted", "ned",
]  # fmt: skip
_BE_FORMS = [
    "am", "is", "are", "was", "were", "be", "been", "being", "isn't", "aren't", "wasn't", "weren't",
]  # fmt: skip
_IRREGULAR_PARTICIPLES = [
    "done", "made", "given", "taken", "seen", "known", "written", "shown", "found", "built", "held", "told",
    "sold", "sent", "spent", "kept", "brought", "bought", "caught", "taught", "thought", "fought", "paid", "said",
    "heard", "left", "lost", "meant", "met", "led", "won", "understood", "broken", "chosen", "driven", "eaten",
    "fallen", "forgotten", "frozen", "hidden", "ridden", "spoken", "stolen", "thrown", "worn", "woken", "drawn",
    "grown", "blown", "sworn", "torn", "begun", "sung", "sunk", "rung", "put", "set", "cut", "hit", "read", "let",
    "shut", "spread", "cast", "hurt", "beaten", "bitten", "born", "borne", "forgiven", "gotten", "hung", "laid",
    "lit", "overcome", "proven", "sewn", "shaken", "shot", "slain", "spun", "struck", "stuck", "undertaken",
    "withdrawn", "fed", "bred", "shed", "wed",
]  # fmt: skip
_ADJECTIVAL_ED = [
    "interested", "tired", "excited", "bored", "worried", "surprised", "confused", "scared", "ashamed",
    "advanced", "complicated", "sophisticated", "detailed", "experienced", "skilled", "talented", "dedicated",
    "related", "supposed", "pleased", "concerned", "crowded", "amazed", "annoyed", "delighted", "disappointed",
    "frightened", "satisfied", "relaxed", "qualified", "limited", "balanced", "organized", "organised",
]  # fmt: skip


class PastTenseParams(StrictModel):
    """Word lists of the ``past_tense`` heuristic (see the module docstring).

    Attributes:
        finite_past: past forms that are never a participle or present form; any occurrence counts.
        shared_past: irregular forms shared with the participle; count only after a subject.
        subjects: words after which a shared form or a regular ``-ed`` word counts.
        adverbs: words skipped between the subject and the verb (any ``-ly`` word is skipped too).
        non_verb_ed: words ending in ``ed`` that are never a regular past form.
    """

    finite_past: list[str] = Field(default_factory=lambda: list(_FINITE_PAST))
    shared_past: list[str] = Field(default_factory=lambda: list(_SHARED_PAST))
    subjects: list[str] = Field(default_factory=lambda: list(_SUBJECTS))
    adverbs: list[str] = Field(default_factory=lambda: list(_ADVERBS))
    non_verb_ed: list[str] = Field(default_factory=lambda: list(_NON_VERB_ED))


class PassiveVoiceParams(StrictModel):
    """Word lists of the ``passive_voice`` heuristic (see the module docstring).

    Attributes:
        be_forms: auxiliaries that open a passive (tokens ending in ``'re`` / ``'m`` count as well).
        participles: irregular past participles.
        adverbs: words skipped between the auxiliary and the participle (any ``-ly`` word too).
        adjectival_ed: ``-ed`` words read as adjectives after *be*, never counted.
        non_verb_ed: words ending in ``ed`` that are never a participle.
    """

    be_forms: list[str] = Field(default_factory=lambda: list(_BE_FORMS))
    participles: list[str] = Field(default_factory=lambda: list(_IRREGULAR_PARTICIPLES))
    adverbs: list[str] = Field(default_factory=lambda: list(_ADVERBS))
    adjectival_ed: list[str] = Field(default_factory=lambda: list(_ADJECTIVAL_ED))
    non_verb_ed: list[str] = Field(default_factory=lambda: list(_NON_VERB_ED))


class RuleJudgeParams(StrictModel):
    """Every open detail of the rule checks (protocol §6 fixes the scoring, these fix the what).

    Attributes:
        start_phrase: phrase of ``start_phrase`` (2 at the start, 1 elsewhere).
        help_phrase: phrase of ``help_phrase`` (2 at the end, 1 elsewhere).
        keywords: words of ``keyword`` (2 × share found).
        hashtags_full: hashtag count that earns 2.
        exclamation_step: rating per exclamation mark.
        emoji_full_above: more emoji than this earn 2 (at least one earns 1).
        min_words: ``word_limit_min`` threshold.
        ending_letter: the letter every sentence must end with.
        chinese_codes / spanish_codes: ``langdetect`` codes accepted for each language rule.
        min_phone_numbers: telephone numbers needed.
        language_seed: seed of the language detector (fixed → deterministic).
        ignore_tokens: special tokens removed before every check.
        past_tense / passive_voice: the word lists of the two grammar heuristics.
    """

    start_phrase: str = Field(default="Here is my response", min_length=1)
    help_phrase: str = Field(default="Is there anything else I can help with?", min_length=1)
    keywords: list[str] = Field(default_factory=lambda: ["beauty", "pretty"], min_length=1)
    hashtags_full: int = Field(default=4, ge=1)
    exclamation_step: float = Field(default=0.5, gt=0)
    emoji_full_above: int = Field(default=2, ge=1)
    min_words: int = Field(default=800, ge=1)
    ending_letter: str = Field(default="y", min_length=1, max_length=1)
    chinese_codes: list[str] = Field(default_factory=lambda: ["zh-cn"], min_length=1)
    spanish_codes: list[str] = Field(default_factory=lambda: ["es"], min_length=1)
    min_phone_numbers: int = Field(default=1, ge=1)
    language_seed: int = 0
    ignore_tokens: list[str] = Field(default_factory=lambda: ["<end_of_turn>", "<eos>"])
    past_tense: PastTenseParams = Field(default_factory=PastTenseParams)
    passive_voice: PassiveVoiceParams = Field(default_factory=PassiveVoiceParams)

    @field_validator("keywords")
    @classmethod
    def _non_blank_keywords(cls, value: list[str]) -> list[str]:
        if any(not k.strip() for k in value):
            raise ValueError("keywords must not be blank")
        return value


@dataclass(frozen=True)
class RuleResult:
    """One check: the rating (0–2) and a short note on what was found."""

    rating: float
    note: str


_Check = Callable[[str, RuleJudgeParams], RuleResult]

# --- helpers -------------------------------------------------------------------------------------------------------

_MARKUP = "\"'“”‘’*_#>`~ \t\r\n"
_CLOSING_PUNCT = ".?!:;,。？！"
_WORD_RE = re.compile(r"\w+")
_TOKEN_RE = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")
_LETTER_RE = re.compile(r"[^\W\d_]")
_EMOJI_RE = re.compile(
    "[\U0001f1e6-\U0001f1ff]{2}"  # a flag: two regional indicators
    "|[\U0001f000-\U0001f1e5\U0001f200-\U0001f3fa\U0001f400-\U0001faff"
    "\u2600-\u27bf\u2b50\u2b55\u2b1b\u2b1c\u2b05-\u2b07\u231a\u231b\u2328\u23cf\u23e9-\u23f3\u23f8-\u23fa"
    "\u203c\u2049\u2139\u2194-\u2199\u21a9\u21aa\u24c2\u25aa\u25ab\u25b6\u25c0\u25fb-\u25fe\u2934\u2935"
    "\u3030\u303d\u3297\u3299]"
)
_HASHTAG_RE = re.compile(r"(?<![\w&/#])#(?=\w*[^\W\d_])\w+")
_QUOTED_RE = re.compile(r"[(\[]*[\"“][^\"“”]+[\"”][.,;:!?)\]…]*")
_KOREAN_RE = re.compile(r"[\uac00-\ud7a3\s.,!?]+")
_HANGUL_RE = re.compile(r"[\uac00-\ud7a3]")
_POSTSCRIPT_RE = re.compile(r"^[ \t>*_#-]*P\.\s?S\.", re.MULTILINE)
_FENCE_OPEN_RE = re.compile(r"^```[\w+.-]*")
_NUMBERED_RE = re.compile(r"^[ \t]*\d{1,3}[.)][ \t]+\S", re.MULTILINE)
_DOUBLE_BREAK_RE = re.compile(r"\S[ \t]*\r?\n[ \t]*\r?\n\s*\S")
_URL_RE = re.compile(
    r"\bhttps?://[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|\bwww\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", re.IGNORECASE
)
_SENTENCE_SPLIT_RE = re.compile(r"[.!?。！？]+")
_EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_DATE_RE = re.compile(r"(?<!\d)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?!\d)")
_PHONE_RES = (
    re.compile(r"(?<![\w+-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)[\s.-]?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-])"),
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?![\w-])"),
    re.compile(r"(?<![\w.-])\d{3}-\d{4}(?![\w-])"),
    re.compile(r"(?<![\w-])(?:1-)?(?:\(\d{3}\)\s?|\d{3}-)(?:\d{3}-)?[A-Z]{4,7}(?![\w-])"),
)
_LANGDETECT_LOCK = threading.Lock()


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _core_phrase(phrase: str) -> str:
    return _normalise(phrase).rstrip(_CLOSING_PUNCT + " ")


def _cased_words(text: str) -> list[str]:
    return [w for w in text.split() if w.lower() != w.upper()]


def _share(found: int, total: int, what: str) -> RuleResult:
    if total == 0:
        return RuleResult(0.0, f"no {what}")
    return RuleResult(2.0 * found / total, f"{what}: {found}/{total}")


def _binary(ok: bool, note: str) -> RuleResult:
    return RuleResult(2.0 if ok else 0.0, note)


def _skip_adverbs(tokens: list[str], index: int, adverbs: frozenset[str], step: int) -> int:
    """Index of the first token from ``index`` (walking by ``step``) that is not one of ≤ 2 adverbs."""
    for _ in range(2):
        if 0 <= index < len(tokens) and (tokens[index] in adverbs or tokens[index].endswith("ly")):
            index += step
    return index


def _is_regular_ed(token: str, non_verb: frozenset[str]) -> bool:
    return len(token) >= 4 and token.endswith("ed") and token not in non_verb


@cache
def _language_factory(seed: int) -> Any:
    """A seeded ``langdetect`` factory with the profiles shipped in the package (loaded once per seed)."""
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(seed)
    return factory


def detect_language(text: str, seed: int = 0) -> str | None:
    """``langdetect``'s language code of ``text`` (deterministic for a seed), or None when it has no letters."""
    if not _LETTER_RE.search(text):
        return None
    from langdetect.lang_detect_exception import LangDetectException

    with _LANGDETECT_LOCK:
        detector = _language_factory(int(seed)).create()
        detector.append(text)
        try:
            return str(detector.detect())
        except LangDetectException:
            return None


# --- graded checks -------------------------------------------------------------------------------------------------


def _all_capital(text: str, p: RuleJudgeParams) -> RuleResult:
    words = _cased_words(text)
    return _share(sum(w.isupper() for w in words), len(words), "upper-case words")


def _all_lowercase(text: str, p: RuleJudgeParams) -> RuleResult:
    words = _cased_words(text)
    return _share(sum(w.islower() for w in words), len(words), "lower-case words")


def _quoted_words(text: str, p: RuleJudgeParams) -> RuleResult:
    words = [w for w in text.split() if _WORD_RE.search(w)]
    return _share(sum(bool(_QUOTED_RE.fullmatch(w)) for w in words), len(words), "quoted words")


def _emoji(text: str, p: RuleJudgeParams) -> RuleResult:
    n = len(_EMOJI_RE.findall(text))
    rating = 2.0 if n > p.emoji_full_above else 1.0 if n >= 1 else 0.0
    return RuleResult(rating, f"emoji: {n}")


def _hashtags(text: str, p: RuleJudgeParams) -> RuleResult:
    n = len(_HASHTAG_RE.findall(text))
    return RuleResult(min(2.0, 2.0 * n / p.hashtags_full), f"hashtags: {n}")


def _exclamation(text: str, p: RuleJudgeParams) -> RuleResult:
    n = text.count("!") + text.count("！")
    return RuleResult(min(2.0, p.exclamation_step * n), f"exclamation marks: {n}")


def _start_phrase(text: str, p: RuleJudgeParams) -> RuleResult:
    core, body = _core_phrase(p.start_phrase), _normalise(text).lstrip(_MARKUP)
    if body.startswith(core):
        return RuleResult(2.0, "phrase at the start")
    return RuleResult(1.0, "phrase not at the start") if core in body else RuleResult(0.0, "no phrase")


def _help_phrase(text: str, p: RuleJudgeParams) -> RuleResult:
    core, body = _core_phrase(p.help_phrase), _normalise(text).rstrip(_MARKUP)
    if body.rstrip(_CLOSING_PUNCT + _MARKUP).endswith(core):
        return RuleResult(2.0, "phrase at the end")
    return RuleResult(1.0, "phrase not at the end") if core in body else RuleResult(0.0, "no phrase")


def _keyword(text: str, p: RuleJudgeParams) -> RuleResult:
    found = [k for k in p.keywords if re.search(rf"(?<!\w){re.escape(k)}(?!\w)", text, re.IGNORECASE)]
    return _share(len(found), len(p.keywords), "keywords found")


# --- binary checks -------------------------------------------------------------------------------------------------


def _language(codes: Callable[[RuleJudgeParams], list[str]]) -> _Check:
    def check(text: str, p: RuleJudgeParams) -> RuleResult:
        code = detect_language(text, p.language_seed)
        return _binary(code in codes(p), f"detected language: {code or 'none'}")

    return check


def _korean(text: str, p: RuleJudgeParams) -> RuleResult:
    body = text.strip()
    ok = bool(_KOREAN_RE.fullmatch(body)) and bool(_HANGUL_RE.search(body))
    return _binary(ok, "only Hangul" if ok else "not only Hangul")


def _word_limit_min(text: str, p: RuleJudgeParams) -> RuleResult:
    n = len(_WORD_RE.findall(text))
    return _binary(n >= p.min_words, f"words: {n} (need {p.min_words})")


def _postscript(text: str, p: RuleJudgeParams) -> RuleResult:
    ok = bool(_POSTSCRIPT_RE.search(text))
    return _binary(ok, "P.S. line" if ok else "no P.S. line")


def _json_format(text: str, p: RuleJudgeParams) -> RuleResult:
    body = text.strip()
    body = _FENCE_OPEN_RE.sub("", body, count=1)
    body = body.removesuffix("```").strip()
    try:
        json.loads(body)
    except (ValueError, RecursionError) as exc:
        return RuleResult(0.0, f"not JSON: {type(exc).__name__}")
    return RuleResult(2.0, "valid JSON")


def _numbered_list(text: str, p: RuleJudgeParams) -> RuleResult:
    ok = bool(_NUMBERED_RE.search(text))
    return _binary(ok, "numbered item" if ok else "no numbered item")


def _double_breaks(text: str, p: RuleJudgeParams) -> RuleResult:
    ok = bool(_DOUBLE_BREAK_RE.search(text))
    return _binary(ok, "blank-line break" if ok else "no blank-line break")


def _asterisk_sep(text: str, p: RuleJudgeParams) -> RuleResult:
    ok = "***" in text
    return _binary(ok, "*** found" if ok else "no ***")


def _citations(text: str, p: RuleJudgeParams) -> RuleResult:
    urls = _URL_RE.findall(text)
    return _binary(bool(urls), f"URLs: {len(urls)}")


def _same_letter_ending(text: str, p: RuleJudgeParams) -> RuleResult:
    endings = []
    for piece in _SENTENCE_SPLIT_RE.split(text):
        letters = _LETTER_RE.findall(piece)
        if letters:
            endings.append(letters[-1].casefold())
    if not endings:
        return RuleResult(0.0, "no sentence")
    good = sum(e == p.ending_letter.casefold() for e in endings)
    return _binary(good == len(endings), f"sentences ending in {p.ending_letter!r}: {good}/{len(endings)}")


def _email(text: str, p: RuleJudgeParams) -> RuleResult:
    n = len(_EMAIL_RE.findall(text))
    return _binary(n >= 1, f"e-mail addresses: {n}")


def _telephone_number(text: str, p: RuleJudgeParams) -> RuleResult:
    spans = []
    for pattern in _PHONE_RES:
        for match in pattern.finditer(text):
            digits = sum(ch.isdigit() for ch in match.group())
            if pattern is _PHONE_RES[1] and not 8 <= digits <= 15:
                continue
            spans.append(match.span())
    kept_end, n = -1, 0
    for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):  # overlapping matches are one number
        if start >= kept_end:
            kept_end, n = end, n + 1
        else:
            kept_end = max(kept_end, end)
    return _binary(n >= p.min_phone_numbers, f"telephone numbers: {n}")


def _date_format(text: str, p: RuleJudgeParams) -> RuleResult:
    match = _DATE_RE.search(text)
    return _binary(match is not None, f"date: {match.group()}" if match else "no YYYY-MM-DD date")


def _past_tense(text: str, p: RuleJudgeParams) -> RuleResult:
    q = p.past_tense
    finite, shared, subjects = frozenset(q.finite_past), frozenset(q.shared_past), frozenset(q.subjects)
    adverbs, non_verb = frozenset(q.adverbs), frozenset(q.non_verb_ed)
    tokens = [t.replace("’", "'") for t in _TOKEN_RE.findall(text.lower())]
    for i, token in enumerate(tokens):
        if token in finite:
            return RuleResult(2.0, f"past verb: {token!r}")
        if token in shared or _is_regular_ed(token, non_verb):
            before = _skip_adverbs(tokens, i - 1, adverbs, -1)
            if before >= 0 and tokens[before] in subjects:
                return RuleResult(2.0, f"past verb: {tokens[before]!r} … {token!r}")
    return RuleResult(0.0, "no past-tense verb")


def _passive_voice(text: str, p: RuleJudgeParams) -> RuleResult:
    q = p.passive_voice
    be, participles, adverbs = frozenset(q.be_forms), frozenset(q.participles), frozenset(q.adverbs)
    excluded = frozenset(q.adjectival_ed) | frozenset(q.non_verb_ed)
    tokens = [t.replace("’", "'") for t in _TOKEN_RE.findall(text.lower())]
    for i, token in enumerate(tokens):
        if not (token in be or token.endswith(("'re", "'m"))):
            continue
        j = _skip_adverbs(tokens, i + 1, adverbs, 1)
        while j < len(tokens) and tokens[j] in ("been", "being"):
            j = _skip_adverbs(tokens, j + 1, adverbs, 1)
        if j >= len(tokens):
            continue
        verb = tokens[j]
        if verb in participles or _is_regular_ed(verb, excluded):
            return RuleResult(2.0, f"passive: {token!r} … {verb!r}")
    return RuleResult(0.0, "no passive verb")


_CHECKS: dict[str, _Check] = {
    "all_capital": _all_capital,
    "all_lowercase": _all_lowercase,
    "chinese": _language(lambda p: p.chinese_codes),
    "spanish": _language(lambda p: p.spanish_codes),
    "korean": _korean,
    "emoji": _emoji,
    "hashtags": _hashtags,
    "exclamation": _exclamation,
    "citations": _citations,
    "start_phrase": _start_phrase,
    "help_phrase": _help_phrase,
    "same_letter_ending": _same_letter_ending,
    "email": _email,
    "word_limit_min": _word_limit_min,
    "telephone_number": _telephone_number,
    "postscript": _postscript,
    "keyword": _keyword,
    "json_format": _json_format,
    "numbered_list": _numbered_list,
    "double_breaks": _double_breaks,
    "asterisk_sep": _asterisk_sep,
    "quoted_words": _quoted_words,
    "date_format": _date_format,
    "past_tense": _past_tense,
    "passive_voice": _passive_voice,
}
if set(_CHECKS) != set(RULE_IDS):  # pragma: no cover - guards edits of either table
    raise RuntimeError(f"rule checks and rule ids differ: {sorted(set(_CHECKS) ^ set(RULE_IDS))}")


class RuleJudge:
    """Rates texts against one rule concept each (0–2), deterministically.

    Its rows carry the same protocol record as the other judges (:meth:`record`), with ``judge_kind = "rule"`` and
    ``criterion = "rule"``.

    Args:
        params: the rule parameters (default :class:`RuleJudgeParams`).
        seed: run seed, recorded (the language detector uses ``params.language_seed``).
    """

    kind: ClassVar[str] = "rule"
    parse_rule: ClassVar[str] = RULE_JUDGE_VERSION
    criterion: ClassVar[str] = RULE_CRITERION

    def __init__(self, params: RuleJudgeParams | None = None, *, seed: int = 0) -> None:
        self.params = params if params is not None else RuleJudgeParams()
        self.seed = int(seed)
        self.temperature = 0.0
        self.config_sha256 = content_key({"rule": RULE_JUDGE_VERSION, **self.params.model_dump()})

    @property
    def model_name(self) -> str:
        """Stored as ``judge_model``: the rule version and the language detector's version."""
        try:
            version = metadata.version("langdetect")
        except metadata.PackageNotFoundError:  # pragma: no cover - a declared dependency
            version = "missing"
        return f"{RULE_JUDGE_VERSION}+langdetect-{version}"

    def record(self) -> dict[str, Any]:
        """The protocol record shared by every rule judgement (the fields of ``Judge.record``)."""
        return {
            "judge_kind": self.kind,
            "judge_model": self.model_name,
            "temperature": self.temperature,
            "parse_rule": self.parse_rule,
            "seed": self.seed,
        }

    def check(self, rule_id: str, text: str | None) -> RuleResult:
        """Rating and note of ``text`` under ``rule_id`` (``AxbenchConfigError`` for an unknown rule)."""
        body = "" if text is None or (isinstance(text, float) and text != text) else str(text)
        for token in self.params.ignore_tokens:
            body = body.replace(token, "")
        return _CHECKS[check_rule_id(rule_id)](body, self.params)

    def score(self, rule_id: str, text: str | None) -> float:
        """The 0–2 rating of ``text`` under ``rule_id``."""
        return self.check(rule_id, text).rating

    def judge(self, rule_id: str, texts: Sequence[str | None]) -> pd.DataFrame:
        """One ``judgements``-shaped row per text (``RULE_ROW_COLUMNS``, input order); the caller adds the keys."""
        check_rule_id(rule_id)
        results = [self.check(rule_id, t) for t in texts]
        frame = pd.DataFrame(
            {
                "rule_id": rule_id,
                "criterion": self.criterion,
                "rating": [r.rating for r in results],
                "parse_ok": True,
                "raw_completion": [r.note for r in results],
                "template_sha256": self.config_sha256,
            },
            index=range(len(results)),
        )
        for key, value in self.record().items():
            frame[key] = value
        return frame[RULE_ROW_COLUMNS].astype({"rating": "float64", "parse_ok": "bool", "seed": "int64"})

    def rate(self, items: pd.DataFrame) -> pd.DataFrame:
        """``RATING_COLUMNS`` rows (criterion ``rule``) for items holding ``item``, ``rule_id`` and ``generation``."""
        missing = [c for c in ("item", "rule_id", "generation") if c not in items.columns]
        if missing:
            raise AxbenchDataError(f"rule judge items: missing column(s) {missing}")
        results = [
            self.check(str(rule), text)
            for rule, text in zip(items["rule_id"], items["generation"], strict=True)
        ]
        return pd.DataFrame(
            {
                "item": items["item"].to_numpy(),
                "criterion": self.criterion,
                "rating": [r.rating for r in results],
                "parse_ok": True,
                "raw_completion": [r.note for r in results],
                "template_sha256": self.config_sha256,
            },
            index=range(len(results)),
        )[RATING_COLUMNS]

    def judge_generations(
        self, generations: pd.DataFrame, rule_of_concept: Mapping[int, str]
    ) -> pd.DataFrame:
        """Rule judgements of ``steering_generations`` rows whose concept is a rule concept.

        Args:
            generations: rows with ``GENERATION_KEYS`` and ``steered_generation`` (protocol §1.11).
            rule_of_concept: ``concept_id`` → rule id; rows of other concepts are skipped.

        Returns:
            ``judgements`` rows (``JUDGEMENT_COLUMNS``), one per rated generation; identical texts of one rule are
            checked once and their copies flagged ``replica``.
        """
        need = [*GENERATION_KEYS, "steered_generation"]
        missing = [c for c in need if c not in generations.columns]
        if missing:
            raise AxbenchDataError(f"steering_generations: missing column(s) {missing}")
        rules = {int(c): check_rule_id(str(r), "rule concepts") for c, r in rule_of_concept.items()}
        rows = generations[generations["concept_id"].astype("int64").isin(list(rules))]
        out = rows[GENERATION_KEYS].copy().reset_index(drop=True)
        texts = rows["steered_generation"].fillna("").astype(str).tolist()
        rule_ids = [rules[int(c)] for c in rows["concept_id"]]
        seen: dict[tuple[str, str], RuleResult] = {}
        replica, results = [], []
        for rule, text in zip(rule_ids, texts, strict=True):
            replica.append((rule, text) in seen)
            if not replica[-1]:
                seen[(rule, text)] = self.check(rule, text)
            results.append(seen[(rule, text)])
        out["criterion"] = self.criterion
        out["rating"] = [r.rating for r in results]
        out["parse_ok"] = True
        out["raw_completion"] = [r.note for r in results]
        out["template_sha256"] = self.config_sha256
        for key, value in self.record().items():
            out[key] = value
        out["replica"] = replica
        return judgement_frame(out)
