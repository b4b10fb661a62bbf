"""Search strategies: ``random``, ``evolution`` (regularized evolution) and ``nsga2``.

Importing this package registers them all in :data:`STRATEGIES`.
"""

from slimcv.nas.strategies import evolution, nsga2, random_search  # noqa: F401
from slimcv.nas.strategies.base import STRATEGIES, Strategy, genotype_key

__all__ = ["STRATEGIES", "Strategy", "genotype_key"]
