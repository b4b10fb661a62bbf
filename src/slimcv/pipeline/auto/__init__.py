"""Auto mode: the fastest model on a target runtime within an accuracy bound.

``slimcv optimize --model M --data D --target T --max-drop P`` measures the baseline and its
per-layer pruning sensitivity, prepares candidates (pruning levels x INT8 / mixed precision x
runtime precisions; in parallel on Ray with ``--workers``), times each on the target, picks the
fastest within the bound, and writes the Pareto front and a report.
"""

from slimcv.pipeline.auto.config import TARGET_VARIANTS, AutoConfig
from slimcv.pipeline.auto.runner import AutoResult, optimize_auto
from slimcv.pipeline.auto.select import Selection, select

__all__ = ["TARGET_VARIANTS", "AutoConfig", "AutoResult", "Selection", "optimize_auto", "select"]
