"""Efficient architectures: blocks, networks described as data, families, scaling, surgery.

``build_network("stem_c16,ir_r2_k3_s2_e6_c24,head_c128", num_classes=10)`` builds a model from
a spec string (grammar in :mod:`slimcv.arch.spec`).
"""

from slimcv.arch.builder import SpecNet, build_network
from slimcv.arch.spec import BlockSpec, NetworkSpec, parse_network

__all__ = ["BlockSpec", "NetworkSpec", "SpecNet", "build_network", "parse_network"]
