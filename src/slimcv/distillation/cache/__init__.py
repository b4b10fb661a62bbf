"""Teacher outputs computed once and reused across epochs and runs."""

from slimcv.distillation.cache.logits import (
    CacheInfo,
    cache_key,
    cached_teacher_logits,
    is_deterministic,
)

__all__ = ["CacheInfo", "cache_key", "cached_teacher_logits", "is_deterministic"]
