"""Concept-detection logic behind the ``latent_eval`` nodes (protocol §4).

* :mod:`~axbench_kedro.detection.inputs` — checks of ``latent_eval_data`` and the artefacts that get scored.
* :mod:`~axbench_kedro.detection.imbalance` — the shared negative pool of the 1:100 set.
* :mod:`~axbench_kedro.detection.rows` — long-form ``latent_scores`` / ``imbalance_scores`` rows.
* :mod:`~axbench_kedro.detection.model_scores` — every activation and text method in one pass, content-cached.
* :mod:`~axbench_kedro.detection.prompt_detection` — PromptDetection ratings through the LLM client.
* :mod:`~axbench_kedro.detection.summary` — per-concept metrics and the steering magnitude table.
* :mod:`~axbench_kedro.detection.roc` — the mean ROC figure.

Submodules are imported explicitly so that importing the package stays cheap.
"""
