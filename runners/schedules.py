"""Learning-rate schedules, the runner's business (never the optimizer's), stepped once per
epoch through torch's own schedulers:

    constant  lr throughout
    step      lr * lr_decay_factor^k after the k-th epoch of lr_decay_epochs (the papers' CNN
              schedules: x0.1 at epochs 40 and 80 of 100)
    cosine    cosine annealing from lr to 0 over max_epochs
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR

from runners.config_schema import LRSchedule, TrainerConfig


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainerConfig) -> LRScheduler | None:
    if cfg.lr_schedule == LRSchedule.constant:
        return None
    if cfg.lr_schedule == LRSchedule.step:
        return MultiStepLR(
            optimizer, milestones=list(cfg.lr_decay_epochs), gamma=cfg.lr_decay_factor
        )
    assert cfg.max_epochs is not None  # checked in runners.build.check_trainer
    return CosineAnnealingLR(optimizer, T_max=cfg.max_epochs)
