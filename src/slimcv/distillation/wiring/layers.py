"""Reading named intermediate layers through forward hooks.

Hooks are attached for one forward pass and removed right after (:func:`record`), so neither
model is edited: a student saved, exported or benchmarked after distillation carries no hook.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from slimcv.errors import SlimcvError, UnknownNameError

#: Names listed in an error message before the rest is summarised as a count.
MAX_LISTED = 25


def parse_pairs(text: str | Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """``"layer3:layer2,layer4:layer3"`` (or a sequence of ``t:s`` items) -> name pairs.

    Raises:
        SlimcvError: an item is not ``teacher_layer:student_layer``.
    """
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    pairs = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        teacher, sep, student = item.partition(":")
        if not sep or not teacher.strip() or not student.strip() or ":" in student:
            raise SlimcvError(
                f"malformed layer pair {item!r}; expected teacher_layer:student_layer, "
                "e.g. layer3:layer3"
            )
        pairs.append((teacher.strip(), student.strip()))
    return tuple(pairs)


def required_pairs(
    value: str | Sequence[Sequence[str]], method: str
) -> tuple[tuple[str, str], ...]:
    """A method config's ``pairs`` field (``"t:s,..."`` or a sequence of pairs) as a tuple.

    Raises:
        SlimcvError: no pair given (``method`` names what needs them), or a malformed item.
    """
    pairs = (
        parse_pairs(value) if isinstance(value, str) else tuple((str(t), str(s)) for t, s in value)
    )
    if not pairs:
        raise SlimcvError(
            f"{method} needs layer pairs: --feature-pairs teacher_layer:student_layer,..."
        )
    return pairs


def resolve_layers(module: nn.Module, names: Sequence[str], role: str) -> dict[str, nn.Module]:
    """The submodules called ``names``.

    Raises:
        UnknownNameError: a name is not a submodule; the message lists the names that exist,
            closest matches first.
    """
    available = dict(module.named_modules())
    available.pop("", None)
    found = {}
    for name in names:
        if name not in available:
            raise UnknownNameError(
                f"{role} has no layer {name!r}; its layers are: {_listing(name, list(available))}"
            )
        found[name] = available[name]
    return found


def _listing(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    ordered = close + [n for n in names if n not in close]
    shown = ", ".join(ordered[:MAX_LISTED])
    more = len(ordered) - MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


@contextlib.contextmanager
def record(module: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Captures the outputs of the named submodules during the forward passes in the block.

    Yields:
        A dict filled with ``name -> output`` as the module runs (the last call wins when a
        layer runs more than once).
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, layer in resolve_layers(module, names, "the model").items():

        def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
            if not isinstance(out, torch.Tensor):
                raise SlimcvError(
                    f"layer {name!r} outputs {type(out).__name__}, not a tensor; "
                    "pick a layer with a single tensor output"
                )
            outputs[name] = out

        handles.append(layer.register_forward_hook(hook))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def probe_shapes(
    module: nn.Module, names: Sequence[str], input_shape: tuple[int, ...]
) -> dict[str, tuple[int, ...]]:
    """Output shapes of the named layers for one zero batch (train/eval mode restored)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), record(module, names) as outputs:
            module(torch.zeros(input_shape))
    finally:
        module.train(was_training)
    missing = [n for n in names if n not in outputs]
    if missing:
        raise SlimcvError(f"layers {', '.join(missing)} did not run in a forward pass")
    return {name: tuple(outputs[name].shape) for name in names}
