"""A data set's file location is not part of a run's identity; its contents' settings are."""

from __future__ import annotations

from runners.run_identity import run_id
from tests.conftest import compose_config


def test_local_path_does_not_change_the_run_id() -> None:
    here = compose_config("experiment=tnt_faces_ae", "dataset.local_path=/a/faces.mat")
    there = compose_config("experiment=tnt_faces_ae", "dataset.local_path=/b/faces.mat")
    default = compose_config("experiment=tnt_faces_ae")
    assert run_id(here, "tnt_faces_ae") == run_id(there, "tnt_faces_ae")
    assert run_id(here, "tnt_faces_ae") == run_id(default, "tnt_faces_ae")


def test_augmentation_and_normalisation_change_the_run_id() -> None:
    base = compose_config("experiment=tnt_cifar10_resnet32")
    plain = compose_config("experiment=tnt_cifar10_resnet32", "dataset.augmentation=null")
    other = compose_config("experiment=tnt_cifar10_resnet32", "dataset.normalization.std=[1,1,1]")
    ids = {run_id(cfg, "tnt_cifar10_resnet32") for cfg in (base, plain, other)}
    assert len(ids) == 3
