"""Model sources: parse a source string, build or load the model, never download.

See :mod:`slimcv.sources.grammar` for the grammar.
"""

from slimcv.sources.artifact import load_artifact, read_manifest, save_artifact
from slimcv.sources.checkpoint import load_weights, read_state_dict
from slimcv.sources.grammar import GRAMMAR_HELP, SourceSpec, parse_source
from slimcv.sources.loader import build_module, imagenet_labels, load_model
from slimcv.sources.model import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, Preprocess

__all__ = [
    "GRAMMAR_HELP",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "Preprocess",
    "SourceSpec",
    "build_module",
    "imagenet_labels",
    "load_artifact",
    "load_model",
    "load_weights",
    "parse_source",
    "read_manifest",
    "read_state_dict",
    "save_artifact",
]
