"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from __future__ import annotations

import os

from kedro.config import OmegaConfigLoader

from axbench_kedro.hooks import ProjectHooks

# No telemetry prompt, no network: the committed .telemetry file says `consent: false` as well.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

HOOKS = (ProjectHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "globals": ["globals*", "globals*/**"],
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    },
}
