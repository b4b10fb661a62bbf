"""Model analysis: parameters, MACs per layer, weight size and activation memory.

Everything here inspects a model by running it in PyTorch; nothing here runs a deployment
runtime (that is ``slimcv.measure``).
"""

from slimcv.analysis.profile import LayerProfile, ProfileResult, profile_model

__all__ = ["LayerProfile", "ProfileResult", "profile_model"]
