"""``slimcv.distill``: train a small student from a teacher, saved as a reloadable artifact.

This module only sequences the pieces: check the inputs and the output directory before any
work, freeze the teachers (:mod:`.wiring`), optionally read their logits from the cache
(:mod:`.cache`), build the method's objective (:mod:`.methods`), train through the shared loop
(:func:`slimcv.training.fit`), measure and save.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from slimcv.data import DataBundle, load_data
from slimcv.distillation.methods import METHODS, DistillContext, Method
from slimcv.distillation.wiring import FrozenTeacher
from slimcv.errors import DataError, SlimcvError, SourceError
from slimcv.sources.artifact import check_output_dir, save_artifact
from slimcv.sources.model import LoadedModel
from slimcv.training.loop import EpochMetrics, TrainConfig

#: DistillConfig field -> the name it has in the methods' configs.
_METHOD_FIELDS = {
    "temperature": "temperature",
    "alpha": "alpha",
    "feature_pairs": "pairs",
    "feature_loss": "loss",
    "beta": "beta",
    "exits": "exits",
    "teacher_weights": "weights",
}
_FLAGS = {
    "feature_pairs": "--feature-pairs",
    "feature_loss": "--feature-loss",
    "beta": "--beta",
    "exits": "--exits",
    "teacher_weights": "--teacher-weights",
}


@dataclass
class DistillConfig:
    """How to distill.

    Attributes:
        method: ``kd``, ``feature``, ``attention``, ``ensemble``, ``self`` or ``mutual``.
        temperature: soft-target temperature (default: the method's, 4; mutual 1).
        alpha: weight of the soft targets against the labels (default: the method's, 0.9;
            mutual 0.5).
        feature_pairs: ``feature``/``attention``: ``"t_layer:s_layer,..."`` or pairs.
        feature_loss: ``feature``: ``mse`` or ``cosine``.
        beta: weight of the feature / attention / exit term (default: the method's).
        exits: ``self``: student layers that get early-exit heads.
        teacher_weights: ``ensemble``: one weight per teacher (default: equal).
        epochs, batch_size, lr, optimizer, weight_decay, seed: training, as for ``train``.
        split_seed: the seed of the train/val split. It stays fixed when ``seed`` varies, and
            should be the one the teacher was trained with (``train`` uses its ``--seed``,
            default 0): another split would put the teacher's training images in the val
            split and flatter it.
        cache_dir: cache the teachers' logits here and reuse them (``kd``, ``ensemble``; only
            for data without random augmentation, see :mod:`slimcv.distillation.cache`).
    """

    method: str = "kd"
    temperature: float | None = None
    alpha: float | None = None
    feature_pairs: tuple[tuple[str, str], ...] | str = ()
    feature_loss: str | None = None
    beta: float | None = None
    exits: tuple[str, ...] | str = ()
    teacher_weights: tuple[float, ...] = ()
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.05
    seed: int = 0
    split_seed: int = 0
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        method = METHODS.get(self.method)
        self.method_config()  # validates the method's options now, not after loading models
        self.train_config()
        if self.cache_dir is not None and not method.uses_cache:
            cached = ", ".join(n for n in METHODS.names() if METHODS.get(n).uses_cache)
            raise SlimcvError(
                f"--cache-dir applies to methods that read only teacher logits ({cached}), "
                f"not {self.method}"
            )

    def method_config(self) -> Any:
        """The method's own config dataclass, built from the fields that apply to it.

        Raises:
            SlimcvError: an option that does not apply to the method, or a bad value.
        """
        method = METHODS.get(self.method)
        accepted = {f.name for f in dataclasses.fields(method.config)}
        kwargs = {}
        for ours, theirs in _METHOD_FIELDS.items():
            value = getattr(self, ours)
            if value is None or value == () or value == "":
                continue
            if theirs not in accepted:
                raise SlimcvError(
                    f"{_FLAGS.get(ours, ours)} does not apply to --method {self.method}"
                )
            kwargs[theirs] = value
        return method.config(**kwargs)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )


@dataclass
class DistillResult:
    """What distillation made and how it measures.

    Attributes:
        teacher_top1: each teacher's top-1 (percent) on the val split, before distilling.
        student_top1: the distilled student's val top-1.
        student_macs / teacher_macs: batch-1 MACs at each model's input size.
        macs_ratio: student MACs / first teacher MACs.
        peer_top1: ``mutual``: the peer's val top-1.
        cache: per teacher, where its logits came from (``kd``/``ensemble`` with a cache).
    """

    out_dir: str
    method: str
    data: str
    image_size: int
    teachers: list[str]
    student: str
    teacher_top1: list[float]
    student_top1: float
    student_macs: int
    student_params: int
    teacher_macs: list[int]
    epochs: list[EpochMetrics]
    config: dict[str, Any]
    method_config: dict[str, Any]
    peer_top1: float | None = None
    cache: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def macs_ratio(self) -> float | None:
        return self.student_macs / self.teacher_macs[0] if self.teacher_macs else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["epochs"] = [e.to_dict() for e in self.epochs]
        data["macs_ratio"] = self.macs_ratio
        return data


def distill(
    teacher: LoadedModel | list[LoadedModel] | None,
    student: LoadedModel,
    data: str | DataBundle,
    out_dir: str | Path,
    config: DistillConfig | None = None,
    *,
    progress: bool = False,
) -> DistillResult:
    """Trains ``student`` (in place) with ``teacher`` and saves it as an artifact.

    Args:
        teacher: one teacher, a list (``ensemble``), ``None`` (``self``; for ``mutual`` the
            peer is then a freshly initialised copy of the student, else the given model).
            Teachers are put in eval mode and frozen.
        student: the model to train; its preprocessing decides the data's size.
        data: a labeled data source, or a :class:`DataBundle`.
        out_dir: the student's artifact directory (written atomically, never an input).
        config: the method and training settings.

    Raises:
        SourceError: wrong number of teachers, or teacher and student with different classes.
        UnknownNameError: a layer name that does not exist (the message lists those that do).
        DataError: unlabeled data, or data with other classes than the student.
    """
    config = config or DistillConfig()
    started = time.perf_counter()
    method = METHODS.get(config.method)
    method_config = config.method_config()
    teachers = _teacher_list(teacher, method)
    inputs = [m.meta["artifact"] for m in [*teachers, student] if "artifact" in m.meta]
    out = check_output_dir(out_dir, inputs)
    module = student.require_module("distillation")
    for t in teachers:
        t.require_module("a distillation teacher")
        if t.num_classes != student.num_classes:
            raise SourceError(
                f"the teacher {t.source} outputs {t.num_classes} classes but the student "
                f"{student.num_classes}; distillation compares them class by class, so give "
                "both the same classes (--num-classes)"
            )
    bundle = (
        data
        if isinstance(data, DataBundle)
        else load_data(data, student.preprocess, seed=config.split_seed)
    )
    bundle.require_labels("distillation")
    if bundle.num_classes != student.num_classes:
        raise DataError(
            f"{bundle.name} has {bundle.num_classes} classes but the student outputs "
            f"{student.num_classes}; pass --num-classes {bundle.num_classes}"
        )
    from slimcv.analysis import profile_model

    # Profiling also proves each model takes its input size, before any training.
    student_profile = profile_model(module, student.input_shape(1))
    teacher_macs = [profile_model(t.module, t.input_shape(1)).macs for t in teachers]  # type: ignore[arg-type]
    frozen = [
        FrozenTeacher(t.module, t.preprocess, student.preprocess)  # type: ignore[arg-type]
        for t in teachers
    ]
    context = DistillContext(
        student=module,
        teachers=frozen,
        input_shape=student.input_shape(1),
        num_classes=student.num_classes,
        seed=config.seed,
    )
    objective = method.build(method_config, context)  # checks layer names before any work
    cache_infos = []
    if config.cache_dir is not None:
        from slimcv.distillation.cache import cached_teacher_logits

        logits = []
        for t in frozen:
            values, info = cached_teacher_logits(
                t,
                bundle.train,
                config.cache_dir,
                data_name=bundle.name,
                image_size=student.preprocess.image_size,
            )
            logits.append(values)
            cache_infos.append(info.to_dict())
        context.cached_logits = logits
        objective = method.build(method_config, context)
    teacher_top1 = [_top1(t, bundle) for t in frozen]
    from slimcv.training.loop import fit

    history = fit(
        module,
        bundle,
        config.train_config(),
        objective=objective,
        progress=progress,
        description=f"distill ({config.method})",
    )
    peer = getattr(objective, "peer", None)
    peer_top1 = _top1(peer, bundle) if isinstance(peer, nn.Module) else None
    student.labels = bundle.classes
    result = DistillResult(
        out_dir=str(out),
        method=config.method,
        data=bundle.name,
        image_size=student.preprocess.image_size,
        teachers=[t.source for t in teachers],
        student=student.source,
        teacher_top1=teacher_top1,
        student_top1=history[-1].val_top1,
        student_macs=student_profile.macs,
        student_params=student_profile.params,
        teacher_macs=teacher_macs,
        epochs=history,
        config=asdict(config),
        method_config=asdict(method_config),
        peer_top1=peer_top1,
        cache=cache_infos,
    )
    metrics = {
        "val_top1": result.student_top1,
        "teacher_top1": teacher_top1,
        "macs": result.student_macs,
        "data": bundle.name,
    }
    save_artifact(out, student, command="distill", args=result.config, metrics=metrics)
    result.seconds = time.perf_counter() - started
    return result


def _teacher_list(
    teacher: LoadedModel | list[LoadedModel] | None, method: Method
) -> list[LoadedModel]:
    teachers = [] if teacher is None else list(teacher) if isinstance(teacher, list) else [teacher]
    count = len(teachers)
    if method.teachers == "one" and count != 1:
        raise SourceError(f"--method {method.name} takes exactly one teacher, got {count}")
    if method.teachers == "many" and count < 1:
        raise SourceError(f"--method {method.name} needs at least one teacher (--teacher)")
    if method.teachers == "none" and count:
        raise SourceError(f"--method {method.name} uses the student's own outputs; drop --teacher")
    if method.teachers == "peer" and count > 1:
        raise SourceError(f"--method {method.name} takes at most one peer (--teacher), got {count}")
    return teachers


def _top1(model: FrozenTeacher | nn.Module, bundle: DataBundle) -> float:
    """Val top-1 (percent) of a teacher (in its own preprocessing) or a module."""
    module = model.module if isinstance(model, FrozenTeacher) else model
    was_training = module.training
    module.eval()
    correct = seen = 0
    with torch.no_grad():
        for images, labels in DataLoader(bundle.val, batch_size=256):
            logits = model(images)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
    module.train(was_training)
    return 100 * correct / max(seen, 1)
