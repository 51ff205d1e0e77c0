"""Steering evaluation logic behind the ``steering_eval`` nodes (protocol §5).

* :mod:`~axbench_kedro.steering.prompts` — instructions per concept and the prompt grid.
* :mod:`~axbench_kedro.steering.plans` — per-method vectors, magnitudes and generation units.
* :mod:`~axbench_kedro.steering.schedule` — batched, cached, resumable steered generation.
* :mod:`~axbench_kedro.steering.summary` — the per-method summary rows.

Submodules are imported explicitly so that importing the package stays cheap.
"""
