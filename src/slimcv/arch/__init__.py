"""Efficient architectures: blocks, networks described as data, families, scaling, surgery.

``build_network("stem_c16,ir_r2_k3_s2_e6_c24,head_c128", num_classes=10)`` builds a model from
a spec string (grammar in :mod:`slimcv.arch.spec`); ``FAMILIES.get("mobilenetv2")(width=0.5)``
gives a published layout as a spec (:mod:`slimcv.arch.families`), and
:func:`~slimcv.arch.scaling.compound_scale` grows one EfficientNet-style.
"""

from slimcv.arch.builder import SpecNet, build_network
from slimcv.arch.families import FAMILIES, FamilyNetwork
from slimcv.arch.scaling import compound_coefficients, compound_scale
from slimcv.arch.spec import BlockSpec, NetworkSpec, parse_network

__all__ = [
    "FAMILIES",
    "BlockSpec",
    "FamilyNetwork",
    "NetworkSpec",
    "SpecNet",
    "build_network",
    "compound_coefficients",
    "compound_scale",
    "parse_network",
]
