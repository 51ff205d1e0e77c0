"""Steering evaluation logic behind the ``steering_eval`` nodes (protocol §5).

* :mod:`~axbench_kedro.steering.prompt_baseline` — the Prompt baseline's steering instruction per concept (P1).
* :mod:`~axbench_kedro.steering.prompts` — instructions per concept and the prompt grid.
* :mod:`~axbench_kedro.steering.plans` — per-method vectors, magnitudes and generation units.
* :mod:`~axbench_kedro.steering.schedule` — batched, cached, resumable steered generation.
* :mod:`~axbench_kedro.steering.judging` — the configured judge over the generations.
* :mod:`~axbench_kedro.steering.summary` — the per-method summary rows.
* :mod:`~axbench_kedro.steering.usage` — the stage's LLM ledger.

Submodules are imported explicitly so that importing the package stays cheap.
"""
