"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from __future__ import annotations

import os

from kedro.config import OmegaConfigLoader

from axbench_kedro.context import ProjectContext
from axbench_kedro.hooks import ProjectHooks
from axbench_kedro.tracking import MlflowTrackingHooks

# No telemetry prompt, no network: the committed .telemetry file says `consent: false` as well.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Optional MLflow extra (axbench_kedro.tracking): MLflow >= 3.x refuses the local `mlruns/` file store without this.
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

# MlflowTrackingHooks: a no-op unless the optional `mlflow` extra (kedro-mlflow) opened a run.
HOOKS = (ProjectHooks(), MlflowTrackingHooks())

# Parameter validation errors keep their structure (the CLI prints them as one line).
CONTEXT_CLASS = ProjectContext

CONFIG_LOADER_CLASS = OmegaConfigLoader
# conf/base holds the protocol's defaults, shared by every setting; each environment lists only what differs (soft
# merge of parameters and globals). `kedro run` with no --env runs the embedded demo (conf/demo); a paper setting is
# `--env gemma2_2b_l10` etc. and never sees the demo's shrinkage.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "demo",
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
    "config_patterns": {
        "globals": ["globals*", "globals*/**"],
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    },
}
