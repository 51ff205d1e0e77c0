"""``suppression``: the steering evaluation run to suppress concepts (protocol §6).

The suppression prompt set (R1 rewritten instructions that demand the concept, R2 avoidance instructions), negated
factors with each method's suppression intervention, the prompt defence as a factor-free row [D 23], the configured
judge and the suppression score HM(2 − concept, instruction, fluency) with selection on ids 0–4 [D 24].
"""

from axbench_kedro.pipelines.suppression.pipeline import create_pipeline

__all__ = ["create_pipeline"]
