"""A run's identity: which directory it records into, its W&B id and its W&B group.

A run is identified by what decides its result: the resolved config without the settings that
only say where things go or how they are reported (contract.records.NOT_IDENTITY_NODES and
NOT_IDENTITY_KEYS: the logger, the paths, `trainer.force`, the checkpoint cadence, the file a
data set is read from, ...), and without the settings added later while they hold the value
that computes what runs recorded before them computed (IDENTITY_NEUTRAL_DEFAULTS: no
validation split, no tuning), so those runs keep their directories. Rerunning a command therefore
finds its own directory again, which is how a killed run resumes and a completed one is
skipped, on one machine or on a cluster.

The W&B group hashes the same config without the seed, so the seeds of one setting are one
group in the W&B interface; a tuning study's trials are one group.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from contract.records import IDENTITY_NEUTRAL_DEFAULTS, NOT_IDENTITY_KEYS, NOT_IDENTITY_NODES

DEFAULT_EXPERIMENT = "default"
ID_LENGTH = 10


def identity_dict(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data, without the nodes that are not part of the identity."""
    plain = {
        str(key): OmegaConf.to_container(cfg[key], resolve=True, enum_to_str=True)
        if OmegaConf.is_config(cfg[key])
        else cfg[key]
        for key in cfg
        if key not in NOT_IDENTITY_NODES
    }
    for dotted in NOT_IDENTITY_KEYS:
        node, key = dotted.split(".", 1)
        values = plain.get(node)
        if isinstance(values, dict):
            values.pop(key, None)
    for dotted, neutral in IDENTITY_NEUTRAL_DEFAULTS.items():
        node, _, key = dotted.partition(".")
        values = plain.get(node)
        if not key:  # a whole node: neutral when every value of it is (None: null)
            if isinstance(values, dict) and all(v == neutral for v in values.values()):
                del plain[node]
        elif isinstance(values, dict) and key in values and values[key] == neutral:
            del values[key]
    return plain


def _short_hash(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def run_id(cfg: DictConfig, experiment: str) -> str:
    """Short hash of the experiment name and the identity config."""
    return _short_hash({"experiment": experiment, "config": identity_dict(cfg)})


def group_id(cfg: DictConfig, experiment: str) -> str:
    """Like run_id but without the seed: every seed of one setting shares it. The trials of
    a tuning study are one group, "<study>", and the final reruns of its best setting another,
    "<study>-final" (runners.tuning)."""
    tuning = OmegaConf.select(cfg, "tuning")
    if tuning is not None and tuning.study is not None:
        return str(tuning.study) if tuning.role == "trial" else f"{tuning.study}-final"
    data = identity_dict(cfg)
    data.pop("seed", None)
    return _short_hash({"experiment": experiment, "config": data})


def experiment_name(choices: Any) -> str:
    """The chosen experiment config's name, from hydra.runtime.choices."""
    chosen = choices.get("experiment") if choices is not None else None
    return str(chosen) if chosen not in (None, "null") else DEFAULT_EXPERIMENT


def _run_path_resolver(*, _root_: DictConfig) -> str:
    """`${sobench_run_path:}`: "<experiment>/<run_id>", evaluated by Hydra per job."""
    experiment = experiment_name(OmegaConf.select(_root_, "hydra.runtime.choices"))
    return f"{experiment}/{run_id(_root_, experiment)}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("sobench_run_path"):
        OmegaConf.register_new_resolver("sobench_run_path", _run_path_resolver)
