"""Steering judges behind one interface: the AxBench LLM judge (``llm``) and the offline proxy (``proxy``).

Example:
    >>> from axbench_kedro.judges import build_judge, list_judges
    >>> list_judges()
    ['llm', 'proxy']
"""

from axbench_kedro.judges.base import (
    Judge,
    JudgeResources,
    build_judge,
    get_judge_class,
    list_judges,
    register_judge,
)
from axbench_kedro.judges.llm_judge import LLMJudge
from axbench_kedro.judges.parsing import PARSE_RULE, ParsedRating, parse_rating
from axbench_kedro.judges.proxy_judge import ProxyJudge

__all__ = [
    "Judge",
    "JudgeResources",
    "LLMJudge",
    "PARSE_RULE",
    "ParsedRating",
    "ProxyJudge",
    "build_judge",
    "get_judge_class",
    "list_judges",
    "parse_rating",
    "register_judge",
]
