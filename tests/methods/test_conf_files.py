"""Every environment's training / latent_eval parameters validate, with the protocol's per-setting values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.config.training import DEFAULT_METHODS, TrainingParams

CONF = Path(__file__).resolve().parents[2] / "conf"
ENVS = ["base", "gemma2_2b_l10", "gemma2_2b_l20", "gemma2_9b_l20", "gemma2_9b_l31"]


@pytest.mark.parametrize("env", ENVS)
def test_parameters_validate(env: str) -> None:
    training = TrainingParams.model_validate(
        yaml.safe_load((CONF / env / "parameters_training.yml").read_text())["training"]
    )
    latent = LatentEvalParams.model_validate(
        yaml.safe_load((CONF / env / "parameters_latent_eval.yml").read_text())["latent_eval"]
    )
    assert training.methods == DEFAULT_METHODS
    probe, reft = training.method_params("Probe"), training.method_params("ReFT-r1")
    if "9b" in env:
        assert (probe.lr, probe.weight_decay, reft.lr, training.sae_width) == (1e-3, 1e-4, 5e-3, 131072)
    else:
        assert (probe.lr, probe.weight_decay, reft.lr) == (5e-3, 1e-3, 1e-2)
    assert (probe.batch_size, probe.epochs, reft.k, reft.l1_coef, reft.epochs, reft.batch_size) == (
        12,
        24,
        8,
        0.005,
        3,
        6,
    )
    assert latent.imbalance_factor == 100 and latent.batch_size == 16
    assert latent.prompt_detection.max_new_tokens == (4 if env == "base" else 512)


def test_detection_templates_have_the_rubric_placeholders() -> None:
    text = (CONF / "base" / "prompts" / "detect_concept_rating.txt").read_text()
    assert "{concept}" in text and "{text}" in text and "Rating: [[N]]" in text
    base = (CONF / "base" / "prompts" / "detect_concept_rating_base.txt").read_text()
    assert "{concept}" in base and "{text}" in base and base.rstrip("\n").endswith("Rating: [[")
