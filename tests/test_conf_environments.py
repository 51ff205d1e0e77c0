"""Every environment's merged configuration holds the protocol's values (§8) and nothing of the demo leaks out.

conf/base carries the defaults shared by the paper settings, each conf/<setting>/ only what differs, and conf/demo the
embedded demo's shrinkage. The tests load each environment the way `kedro run --env X` does (soft merge) and check
the values of the protocol's defaults table (shared rows and the per-setting columns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from axbench_kedro.config.datagen import DatagenParams
from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.config.steering_eval import PAPER_FACTORS, SteeringEvalParams
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.methods.registry import default_methods
from axbench_kedro.settings import CONFIG_LOADER_ARGS

CONF = Path(__file__).resolve().parents[1] / "conf"
SAE_9B_FACTORS = [0.4, 1.0, 1.4, 1.8, 2.2, 2.6, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]  # protocol §3.7
REPS_FAMILY = ("RePS", "Lang.", "BiPO")
REPS_FACTORS = [*(2.0 * k for k in range(1, 11)), 25.0, 30.0, 40.0, 50.0]  # protocol §3.13

# Protocol §8, per-setting columns.
PAPER = {
    "gemma2_2b_l10": dict(
        model="google/gemma-2-2b-it",
        layer=10,
        sae=("gemma-2-2b", "10-gemmascope-res-16k", 16384),
        probe=(5e-3, 1e-3),
        reft_lr=1e-2,
        sae_factors=PAPER_FACTORS,
        reps=(4e-2, 0.0),
        sft=True,
    ),
    "gemma2_2b_l20": dict(
        model="google/gemma-2-2b-it",
        layer=20,
        sae=("gemma-2-2b", "20-gemmascope-res-16k", 16384),
        probe=(5e-3, 1e-3),
        reft_lr=1e-2,
        sae_factors=PAPER_FACTORS,
        reps=(4e-2, 0.0),
        sft=True,
    ),
    "gemma2_9b_l20": dict(
        model="google/gemma-2-9b-it",
        layer=20,
        sae=("gemma-2-9b-it", "20-gemmascope-res-131k", 131072),
        probe=(1e-3, 1e-4),
        reft_lr=5e-3,
        sae_factors=SAE_9B_FACTORS,
        reps=(8e-2, 0.1),
        sft=False,  # §8: SFT "not run" on 9B
    ),
    "gemma2_9b_l31": dict(
        model="google/gemma-2-9b-it",
        layer=31,
        sae=("gemma-2-9b-it", "31-gemmascope-res-131k", 131072),
        probe=(1e-3, 1e-4),
        reft_lr=5e-3,
        sae_factors=SAE_9B_FACTORS,
        reps=(8e-2, 0.1),
        sft=False,  # §8: SFT "not run" on 9B
    ),
}


def load_env(env: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameters, globals) of ``env`` as `kedro run --env env` merges them."""
    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    loader = OmegaConfigLoader(str(CONF), env=env, **args)
    return loader["parameters"], loader["globals"]


def test_kedro_run_without_env_is_the_demo() -> None:
    assert CONFIG_LOADER_ARGS["default_run_env"] == "demo"
    assert CONFIG_LOADER_ARGS["merge_strategy"] == {"parameters": "soft", "globals": "soft"}


@pytest.mark.parametrize("env", sorted(PAPER))
def test_paper_setting_has_the_protocol_defaults(env: str) -> None:
    params, globals_ = load_env(env)
    want = PAPER[env]
    assert (globals_["setting"], globals_["layer"], globals_["model"]["name_or_path"]) == (
        env,
        want["layer"],
        want["model"],
    )
    assert globals_["model"]["source"] == "hf"
    assert (globals_["generator"]["backend"], globals_["generator"]["model"]) == (
        "openai",
        "gpt-4o-mini-2024-07-18",
    )
    assert (globals_["judge"]["kind"], globals_["judge"]["model"]) == ("llm", "gpt-4o-mini-2024-07-18")
    assert params["run"] == {"setting": env, "layer": want["layer"], "seed": 42}

    datagen = DatagenParams(**params["datagen"])
    assert (datagen.max_concepts, datagen.num_of_examples, datagen.latent_num_of_examples) == (500, 144, 36)
    assert (datagen.train_positives, datagen.pool_per_genre, datagen.output_length, datagen.pool_tokens) == (
        72,
        72,
        128,
        192,
    )
    assert datagen.latent_negative_counts == {"text": 26, "math": 5, "code": 5}
    assert datagen.hard_negative_cap == 10
    assert (datagen.prompt_style, datagen.temperature) == ("chat", 1.0)
    assert (datagen.concept_source.model_id, datagen.concept_source.sae_set) == want["sae"][:2]

    training = TrainingParams.model_validate(params["training"])
    probe, reft, ssv = (training.method_params(m) for m in ("Probe", "ReFT-r1", "SSV"))
    assert (probe.lr, probe.weight_decay, probe.batch_size, probe.epochs) == (*want["probe"], 12, 24)
    assert (reft.lr, reft.k, reft.l1_coef, reft.epochs, reft.batch_size) == (want["reft_lr"], 8, 0.005, 3, 6)
    assert (ssv.lr, ssv.epochs, ssv.batch_size) == (1e-2, 3, 6)
    assert training.method_params("BoW").C == 100.0
    reps, lang, bipo = (training.method_params(m) for m in REPS_FAMILY)  # protocol §3.13, §8
    assert (reps.lr, reps.dropout, reps.epochs, reps.batch_size, reps.scaler) == (*want["reps"], 18, 6, 1.0)
    assert reps.train_factors == REPS_FACTORS[:10] and reps.max_grad_norm == 1.0
    assert (lang.lr, lang.epochs, lang.gradient_accumulation) == (4e-2, 6, 2)
    assert (bipo.epochs, bipo.beta, bipo.factor) == (12, 1.0, 1.0)
    assert (training.activation_batch_size, training.sae_width, training.lm_objective_dtype) == (
        6,
        want["sae"][2],
        None,
    )
    # every registered method (plugins join), less SFT on 9B (§8 "not run"); on 2B SFT trains 20 concepts
    assert params["training"]["methods"] is None
    assert params["training"]["exclude_methods"] == ([] if want["sft"] else ["SFT"])
    assert training.method_names() == [m for m in default_methods() if want["sft"] or m != "SFT"]
    assert ("SFT" in training.method_names()) is want["sft"]
    assert (training.method_params("SFT").lr, training.method_params("SFT").max_concepts) == (4e-5, 20)

    latent = LatentEvalParams.model_validate(params["latent_eval"])
    assert (latent.imbalance_factor, latent.batch_size, latent.keep_token_acts) == (100, 16, False)
    assert (latent.prompt_detection.template, latent.prompt_detection.max_new_tokens) == (
        "detect_concept_rating",
        512,
    )

    steering = SteeringEvalParams.model_validate(params["steering_eval"])
    assert steering.factors == PAPER_FACTORS and len(steering.factors) == 14
    # SAE and SAE-A: the shared grid on 2B, the 9B grid of §3.7 on 9B; every other method the shared grid
    assert steering.factors_for("SAE") == steering.factors_for("SAE-A") == want["sae_factors"]
    assert set(steering.method_factors) == (
        {"SAE", "SAE-A"} if want["sae_factors"] != PAPER_FACTORS else set()
    ) | set(REPS_FAMILY)
    assert all(steering.factors_for(m) == REPS_FACTORS for m in REPS_FAMILY)  # m = 1, the RePS grid
    assert all(steering.factors_for(m) == PAPER_FACTORS for m in ("DiffMean", "ReFT-r1", "Random"))
    assert (steering.instructions.n_selection, steering.instructions.n_test) == (5, 5)
    gen = steering.generation
    assert (gen.max_new_tokens, gen.temperature, gen.top_k, gen.top_p, gen.prompt_replicates) == (
        128,
        1.0,
        50,
        1.0,
        1,
    )
    assert (steering.judge.kind, steering.judge.temperature) == ("llm", 0.0)
    assert (steering.prompt_steering.template, steering.n_resamples, steering.confidence) == (
        "prompt_steering_instruction",
        1000,
        0.95,
    )

    reporting = ReportingParams.model_validate(params["reporting"])
    assert (reporting.n_resamples, reporting.confidence, reporting.settings) == (1000, 0.95, ["gemma2_*"])


@pytest.mark.parametrize("env", sorted(PAPER))
def test_paper_setting_is_a_short_diff_from_base(env: str) -> None:
    """Only setting-specific facts live in conf/<setting>/, and no demo key is inherited."""
    lines = [
        line
        for path in (CONF / env).glob("*.yml")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(lines) <= 40, (
        f"conf/{env} has {len(lines)} configuration lines: keep only what differs from base"
    )
    demo = yaml.safe_load((CONF / "demo" / "parameters.yml").read_text(encoding="utf-8"))
    params, _ = load_env(env)

    def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, dict) and value:
                out.update(leaves(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    paper_leaves = leaves(params)
    leaked = [
        k
        for k, v in leaves(demo).items()
        if k in paper_leaves
        and paper_leaves[k] == v
        and k
        not in {
            "training.hyperparameters.Probe.lr",
            "training.hyperparameters.Probe.weight_decay",
            "training.hyperparameters.ReFT-r1.lr",
            "training.hyperparameters.RePS.lr",
            "training.hyperparameters.RePS.dropout",
        }
    ]  # the 2B values are the 2B settings' own
    assert not leaked, f"demo values in {env}: {leaked}"


def test_demo_environment_is_the_shrunken_embedded_run() -> None:
    params, globals_ = load_env("demo")
    assert (globals_["setting"], globals_["layer"], globals_["model"]["source"]) == (
        "embedded_270m_l12",
        12,
        "embedded",
    )
    assert (globals_["generator"]["backend"], globals_["judge"]["kind"], globals_["report_settings"]) == (
        "local",
        "proxy",
        None,
    )
    datagen = DatagenParams(**params["datagen"])
    assert (datagen.prompt_style, datagen.max_concepts, datagen.latent_negative_counts) == (
        "base",
        4,
        {"text": 22, "math": 1, "code": 1},
    )
    training = TrainingParams.model_validate(params["training"])
    assert (training.method_params("Probe").lr, training.method_params("ReFT-r1").lr) == (5e-3, 1e-2)
    assert training.method_params("Probe").epochs == 24  # inherited from base
    latent = LatentEvalParams.model_validate(params["latent_eval"])
    assert (latent.prompt_detection.max_new_tokens, latent.prompt_detection.temperature) == (4, 1.0)
    steering = SteeringEvalParams.model_validate(params["steering_eval"])
    assert steering.factors == [0.1, 0.2, 0.4] and steering.judge.kind == "proxy"
    # RePS runs in the demo with its measured settings (6 epochs, m = 1 grid [10, 40, 160]); Lang. and BiPO are left
    # out of the time budget, and the demo pays for RePS by skipping upstream's sequence perplexity.
    assert training.method_params("RePS").epochs == 6 and steering.factors_for("RePS") == [10.0, 40.0, 160.0]
    assert "RePS" in training.methods and not {"Lang.", "BiPO"} & set(training.methods)
    assert steering.compute_perplexity and not steering.sequence_perplexity
    assert (steering.generation.max_new_tokens, steering.generation.top_k) == (16, 50)  # top_k from base
    assert steering.judge.proxy.fluency_perplexity == (50.0, 200.0)


def test_detection_templates_have_the_rubric_placeholders() -> None:
    text = (CONF / "base" / "prompts" / "detect_concept_rating.txt").read_text()
    assert "{concept}" in text and "{text}" in text and "Rating: [[N]]" in text
    base = (CONF / "base" / "prompts" / "detect_concept_rating_base.txt").read_text()
    assert "{concept}" in base and "{text}" in base and base.rstrip("\n").endswith("Rating: [[")


def test_training_methods_from_the_command_line_split_on_semicolons() -> None:
    from axbench_kedro.config.training import TrainingParams

    # `kedro run --params "training.methods=DiffMean;RePS;Lang."`: Kedro splits --params on commas, so a list of
    # several names arrives as one string.
    assert TrainingParams(methods="DiffMean; RePS;Lang.").methods == ["DiffMean", "RePS", "Lang."]
    assert TrainingParams(methods="Dictionary(ReFT-r1 16K)").methods == ["Dictionary(ReFT-r1 16K)"]
    with pytest.raises(Exception, match="NoSuchMethod"):
        TrainingParams(methods="DiffMean;NoSuchMethod")


def test_exclude_methods_leaves_names_out_of_the_default_list_and_plugins_still_join(
    tmp_path, monkeypatch
) -> None:
    from methods.plugin_install import PluginInstaller

    # `--params "training.exclude_methods=SFT;LoRA"` arrives as one string; an explicit list is trained as given
    excluded = TrainingParams(exclude_methods="SFT; LoRA")
    assert excluded.exclude_methods == ["SFT", "LoRA"]
    assert excluded.method_names() == [m for m in default_methods() if m not in ("SFT", "LoRA")]
    assert TrainingParams(methods=["DiffMean", "SFT"], exclude_methods=["SFT"]).method_names() == [
        "DiffMean",
        "SFT",
    ]

    params, _ = load_env("gemma2_9b_l31")
    installer = PluginInstaller(tmp_path, monkeypatch)
    installer.toy_package()  # ToyMean, ToyRandom through entry points
    try:
        names = TrainingParams.model_validate(params["training"]).method_names()
        assert names == [m for m in default_methods() if m != "SFT"]
        assert names[-2:] == ["ToyMean", "ToyRandom"] and "SFT" not in names and "LoRA" in names
    finally:
        installer.uninstall_all()  # last registry lookup of the test: the plugins' sys.path entry goes at teardown


def test_unknown_excluded_method_is_one_error_naming_the_key() -> None:
    from axbench_kedro.context import parameter_problems
    from axbench_kedro.pipelines.training import create_pipeline

    params, _ = load_env("gemma2_9b_l20")
    params["training"]["exclude_methods"] = ["SFT", "NoSuchMethod"]
    problems = parameter_problems(params, {"training": create_pipeline()})
    assert len(problems) == 1
    line = str(problems[0])
    assert (
        line.startswith("params:training.exclude_methods: ") and "NoSuchMethod" in line and "\n" not in line
    )
    everything = ";".join(default_methods())
    with pytest.raises(ValueError, match="exclude_methods .* leaves no method to train"):
        TrainingParams(exclude_methods=everything)
