"""Data generation (protocol §2): concept lists, seed pools, prompts, parsing, schemas and orchestration.

Modules: ``concepts`` (concept lists, ``concepts_meta``), ``instructions`` (seed pools, seeded sampling),
``prompts`` (G1–G7 templates, chat and base styles), ``parsing`` (reply parsing, truncation), ``schemas``
(§1 validation), ``greedy`` (target-model answers, cached), ``generate`` (per-concept orchestration),
``run`` (one datagen run: tables, usage, generation record), ``manifest`` (the datagen manifest), ``io`` (catalog
datasets), ``upstream`` (paper input files from local copies of the upstream datasets).
"""
