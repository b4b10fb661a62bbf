"""Small teachers and students for the distillation tests (digits at 16x16, seconds each).

Imported by the test modules (a second conftest.py would clash with tests/conftest.py, which
the suite imports as `conftest`)."""

from __future__ import annotations

import copy

import pytest

from slimcv.sources import LoadedModel, load_model

STUDENT = "slimcv.distillation.students:tiny_cnn"
TEACHER = "slimcv.distillation.students:small_cnn"


@pytest.fixture(scope="session")
def small_teacher_dir(tmp_path_factory: pytest.TempPathFactory):
    """small_cnn (width 16) trained 2 epochs on digits at 16x16, saved as an artifact."""
    from slimcv.training import TrainConfig, seed_everything, train

    out = tmp_path_factory.mktemp("distill") / "teacher"
    seed_everything(0)
    model = load_model(TEACHER, num_classes=10, image_size=16)
    train(model, "digits", out, TrainConfig(epochs=2, lr=5e-3), progress=False)
    return out


@pytest.fixture
def small_teacher(small_teacher_dir) -> LoadedModel:
    return load_model(str(small_teacher_dir))


@pytest.fixture
def tiny_student() -> LoadedModel:
    from slimcv.training import seed_everything

    seed_everything(0)
    return load_model(STUDENT, num_classes=10, image_size=16)


def clone(model: LoadedModel) -> LoadedModel:
    return LoadedModel(
        model.source,
        model.num_classes,
        model.preprocess,
        copy.deepcopy(model.module),
        labels=model.labels,
        meta=dict(model.meta),
    )
