"""A planted API key leaks nowhere: outputs, logs, the LLM cache, MLflow, error messages, tracebacks (issue 14).

A tiny project copy (``tiny_project.py``) runs ``kedro run --pipeline datagen`` in a subprocess with the generator
on the OpenAI backend, talking to a loopback server whose error bodies echo the request's ``Authorization`` header
(what some proxies do). The key is planted the way users set it (``OPENAI_API_KEY``, read by
``conf/base/credentials.yml``); it does not look like an OpenAI key, so only scrubbing by value can hide it. The
logging configuration turns the HTTP layer's own debug logging on (``openai``, ``httpx``/``httpcore`` under either
package name) and writes
every record to ``logs/debug.log``.

1. The server refuses the key (401, echoing it): the run fails and leaves its traceback in ``logs/last-error.log``.
2. The server accepts it after three 500s (echoing it; the client logs each retry): the run completes.

After both, the key is in no file under ``data/`` (outputs and the LLM reply cache), ``logs/`` or the MLflow store,
and in neither run's console output. The shared uninterrupted run of the reliability suite (``tiny_baseline``:
datagen → steering_eval with the LLM judge on the OpenAI backend) is scanned the same way. ``kedro viz build`` is checked with a planted key in ``tests/test_viz_build.py``
(not repeated here: a viz build costs about a minute).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.fake_openai import FAKE_API_KEY, FakeOpenAIServer
from reliability.tiny_project import ENV, KEDRO, LLM_CACHE, llm_reply, make_tiny_project, stage_of
from reporting.project import PLANTED_KEY, files_containing

pytestmark = pytest.mark.slow

KEY = "axb-planted-7f3a9c2e1b5d4e6f0a"  # not shaped like an OpenAI key: the pattern scrubber cannot catch it
_LOGGING = """\
version: 1
disable_existing_loggers: false
formatters:
  plain: {format: "%(asctime)s %(name)s %(levelname)s %(message)s"}
handlers:
  console: {class: logging.StreamHandler, level: INFO, formatter: plain, stream: ext://sys.stderr}
  debug_file: {class: logging.FileHandler, level: DEBUG, formatter: plain, filename: logs/debug.log, encoding: utf-8}
loggers:
  openai: {level: DEBUG}
  httpx: {level: DEBUG}
  httpx2: {level: DEBUG}
  httpcore: {level: DEBUG}
  httpcore2: {level: DEBUG}
  axbench_kedro: {level: DEBUG}
root: {level: INFO, handlers: [console, debug_file]}
"""


def _echo_authorization(server: FakeOpenAIServer) -> None:
    """Make every error body of ``server`` repeat the request's ``Authorization`` header."""
    base: Any = server._httpd.RequestHandlerClass

    class Echo(base):  # type: ignore[misc, valid-type]
        def _send_error(self, status: int, headers: dict[str, str] | None = None) -> None:
            sent = self.headers.get("Authorization", "")
            message = f"request refused (HTTP {status}); you sent Authorization: {sent}"
            body = {"error": {"message": message, "type": "server_error", "code": status}}
            self._send(status, json.dumps(body).encode(), headers)

    server._httpd.RequestHandlerClass = Echo


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[dict[str, Any]]:
    """The two datagen runs (refused, then retried and completed) on one project copy."""
    base = tmp_path_factory.mktemp("secrets")
    with FakeOpenAIServer(reply_fn=llm_reply) as server:
        _echo_authorization(server)
        project = make_tiny_project(base / "p", server.base_url, tiny_model_dir)
        (project / "logs").mkdir(exist_ok=True)
        (project / "logging_debug.yml").write_text(_LOGGING, encoding="utf-8")
        mlruns = base / "mlruns"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update(
            {
                "OPENAI_API_KEY": KEY,
                "OPENAI_LOG": "debug",
                "KEDRO_LOGGING_CONFIG": str(project / "logging_debug.yml"),
                "MLFLOW_TRACKING_URI": mlruns.as_uri(),
                "KEDRO_DISABLE_TELEMETRY": "true",
                "HF_HUB_OFFLINE": "1",
                "OMP_NUM_THREADS": "1",
                "COLUMNS": "200",
            }
        )

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [KEDRO, "run", "--env", ENV, "--pipeline", "datagen"],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )

        server.api_key = "another-key-than-the-planted-one"  # every call: 401, echoing the planted key
        refused = run()
        refused_trace = (project / "logs" / "last-error.log").read_text(encoding="utf-8")
        server.api_key = None
        server.add_failures(("status", 500), ("status", 500), ("status", 500))
        start = len(server.requests)
        completed = run()
        yield {
            "project": project,
            "mlruns": mlruns,
            "refused": refused,
            "refused_trace": refused_trace,
            "completed": completed,
            "sent": server.headers,
            "completed_requests": len(server.requests) - start,
        }


def test_the_planted_key_was_sent(runs: dict[str, Any]) -> None:
    assert {h.get("authorization") for h in runs["sent"]} == {f"Bearer {KEY}"}


def test_a_refused_key_fails_the_run_with_a_scrubbed_traceback(runs: dict[str, Any]) -> None:
    refused = runs["refused"]
    assert refused.returncode != 0
    assert "HTTP 401" in refused.stderr and "check openai.api_key" in refused.stderr
    trace = runs["refused_trace"]
    assert trace.startswith("Traceback") and "LLMCallError" in trace and "HTTP 401" in trace
    assert KEY not in refused.stdout + refused.stderr


def test_retried_errors_are_logged_scrubbed_and_the_run_completes(runs: dict[str, Any]) -> None:
    completed = runs["completed"]
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert runs["completed_requests"] > 3
    debug_log = (runs["project"] / "logs" / "debug.log").read_text(encoding="utf-8")
    # The HTTP layer logged at debug level, the client logged the retries with the echoed header scrubbed.
    assert "openai._base_client" in debug_log and "HTTP Response: POST" in debug_log
    assert "send_request_headers.started" in debug_log  # httpcore's own trace
    assert "you sent Authorization: Bearer ***" in debug_log
    assert KEY not in completed.stdout + completed.stderr


def test_the_key_is_in_no_output_log_cache_or_tracking_file(runs: dict[str, Any]) -> None:
    project = runs["project"]
    cache = project / LLM_CACHE[0]
    assert cache.is_file() and cache.stat().st_size > 0
    assert any((project / "data").rglob("train_data.parquet"))
    assert runs["mlruns"].is_dir()  # the MLflow hook is on: its store is scanned too
    for root in (project / "data", project / "logs", runs["mlruns"], project / "mlruns"):
        if root.exists():
            for needle in (KEY, PLANTED_KEY):
                assert files_containing(root, needle) == [], (root, needle)


def test_a_full_run_with_the_llm_judge_leaks_no_key(tiny_baseline: dict[str, Any]) -> None:
    """datagen → steering_eval with the generator and the LLM judge on the loopback server (the key of
    ``tiny_project``: ``OPENAI_API_KEY``)."""
    project = tiny_baseline["project"]
    stages = {stage_of(body) for body in tiny_baseline["requests"]}
    assert stages == {"datagen", "steering_eval"}  # the judge's calls went over HTTP too
    assert FAKE_API_KEY not in tiny_baseline["log"]
    roots = [project / "data", project / "logs", project / "mlruns"]
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("file:"):
        roots.append(Path(uri.removeprefix("file://")))
    for root in roots:
        if root.exists():
            assert files_containing(root, FAKE_API_KEY) == [], root
