"""How teachers and students are connected without editing either model.

Layers are read through forward hooks that exist only during one forward pass
(:mod:`.layers`), widths are matched by learned 1x1 adapters (:mod:`.adapters`), and teachers
are frozen and fed in their own preprocessing (:mod:`.teachers`).
"""

from slimcv.distillation.wiring.adapters import make_adapter, match_spatial
from slimcv.distillation.wiring.layers import (
    parse_pairs,
    probe_shapes,
    record,
    required_pairs,
    resolve_layers,
)
from slimcv.distillation.wiring.teachers import FrozenTeacher

__all__ = [
    "FrozenTeacher",
    "make_adapter",
    "match_spatial",
    "parse_pairs",
    "required_pairs",
    "probe_shapes",
    "record",
    "resolve_layers",
]
