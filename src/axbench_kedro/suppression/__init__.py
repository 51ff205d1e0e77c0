"""Suppression and prompt attacks (protocol §6): building blocks of the ``suppression`` pipeline.

* :mod:`~axbench_kedro.suppression.replies` — cleaning R1–R3 replies, the avoidance fallbacks, parsing R4 examples.
* :mod:`~axbench_kedro.suppression.texts` — the suppression texts per concept and instruction (R1, R2, R3).
* :mod:`~axbench_kedro.suppression.multishot` — in-context examples for the many-shot attack (R4).
* :mod:`~axbench_kedro.suppression.prompts` — the suppression prompt set, the prompt defence and the attack prompts.
* :mod:`~axbench_kedro.suppression.strengths` — negated factors and per-row strengths by intervention kind.
* :mod:`~axbench_kedro.suppression.scoring` — HM(2 − concept, instruction, fluency), selection and report splits.
* :mod:`~axbench_kedro.suppression.judging` — the steering judge with the rule judge in place of J1 for rule concepts.
* :mod:`~axbench_kedro.suppression.attacks` — attack settings, prompts per method, generation at the selected factor,
  attack scores and the attack summary.

Submodules are imported explicitly so that importing the package stays cheap.
"""
