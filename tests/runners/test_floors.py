"""The FLOP floor's counts (runners.bench.floors) against counts by hand on tiny networks, and
on the MNIST autoencoder against the count made outside the project (the issue that asked for
the floors: SGD-m ~7.7 GMAC per step at batch 1000, floors KFAC 2.3x, TNT 2.6x, Shampoo 2.1x,
K-BFGS every step 2.4x)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optimizers.kbfgs import KBFGS
from optimizers.kfac import KFAC
from optimizers.shampoo import Shampoo
from optimizers.tengrad import TENGraD
from optimizers.tnt import TNT
from runners.bench.floors import layer_shapes, step_macs
from runners.bench.problems import PROBLEMS, build

# Linear(4, 3) -> ReLU -> Linear(3, 2) at batch N = 5. By hand, P = N d_in d_out:
#   layer 1: P = 5*4*3 = 60, its input (the data) needs no gradient; layer 2: P = 5*3*2 = 30
#   forward 60 + 30, weight gradients 60 + 30, input gradient of layer 2 only 30: 210
BATCH = 5
FORWARD_BACKWARD = 210


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def counts(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, float]:
    macs = step_macs(optimizer, layer_shapes(model, torch.randn(BATCH, 4)))
    assert macs is not None
    return macs


def test_sgd_counts_the_forward_and_backward_products_only() -> None:
    model = mlp()
    macs = counts(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model)
    assert macs == {
        "forward_backward": FORWARD_BACKWARD,
        "statistics": 0,
        "inversion": 0,
        "preconditioning": 0,
    }


def test_kfac_by_hand() -> None:
    model = mlp()
    kfac = KFAC(model.parameters(), model=model, curvature_every=1, inverse_every=2)
    # statistics: the sampled pass to the outputs (layer 2's input gradient, 30); Grams of
    # [a;1] (widths 5 and 4) and g (3 and 2), half of N d^2 each:
    #   30 + 5*25/2 + 5*16/2 + 5*9/2 + 5*4/2 = 30 + 62.5 + 40 + 22.5 + 10 = 165
    # inversion every 2 steps: (5^3 + 3^3 + 4^3 + 2^3) / 2 = 112
    # preconditioning G^-1 M A^-1: 3*3*5 + 3*5*5 + 2*2*4 + 2*4*4 = 45 + 75 + 16 + 32 = 168
    assert counts(kfac, model) == {
        "forward_backward": FORWARD_BACKWARD,
        "statistics": 165,
        "inversion": 112,
        "preconditioning": 168,
    }
    empirical = KFAC(model.parameters(), model=model, inverse_every=2, fisher="empirical")
    assert counts(empirical, model)["statistics"] == 165 - 30  # no sampled pass


# Shampoo and TNT see the parameters as tensors: W1 (3, 4), b1 (3), W2 (2, 3), b2 (2).
#   mode Grams, D d_i / 2: W1 12*3/2 + 12*4/2 = 42, b1 3*3/2 = 4.5, W2 6 + 9 = 15, b2 2: 63.5
#   mode products m x_i P_i, D d_i: W1 36 + 48, b1 9, W2 12 + 18, b2 4: 127
#   cubes of the modes 3, 4, 3, 2, 3, 2: 27 + 64 + 27 + 8 + 27 + 8 = 161
def test_shampoo_by_hand() -> None:
    model = mlp()
    shampoo = Shampoo(model.parameters(), curvature_every=1, inverse_every=2)
    assert counts(shampoo, model) == {
        "forward_backward": FORWARD_BACKWARD,
        "statistics": 63.5,
        "inversion": 4 * 161 / 2,  # an eigendecomposition as 4 d^3, every 2 steps
        "preconditioning": 127,
    }
    limited = Shampoo(model.parameters(), inverse_every=2, max_dim=3)  # W1's mode 4 is left out
    assert counts(limited, model)["preconditioning"] == 127 - 48


def test_tnt_by_hand() -> None:
    model = mlp()
    tnt = TNT(model.parameters(), curvature_every=1, inverse_every=2)
    # statistics: the sampled loss's full backward (weight gradients 60 + 30, input gradient
    # 30) and the mode Grams 63.5; inverses d^3 every 2 steps
    assert counts(tnt, model) == {
        "forward_backward": FORWARD_BACKWARD,
        "statistics": 120 + 63.5,
        "inversion": 161 / 2,
        "preconditioning": 127,
    }


def test_kbfgs_by_hand() -> None:
    model = mlp()
    kbfgs = KBFGS(model.parameters(), model=model)  # every step, as its authors
    # second pass: forward 90 and the backward to the outputs 30, inside forward_backward;
    # statistics: Grams of [a;1], 62.5 + 40; inversion: H_a 5 w^2, H_g 4 d_out^2:
    #   5*25 + 4*9 + 5*16 + 4*4 = 257;  preconditioning H_g M H_a as KFAC's: 168
    assert counts(kbfgs, model) == {
        "forward_backward": FORWARD_BACKWARD + 120,
        "statistics": 102.5,
        "inversion": 257,
        "preconditioning": 168,
    }


def test_kbfgs_l_counts_the_pairs_it_holds() -> None:
    model = mlp()
    kbfgs_l = KBFGS(model.parameters(), model=model, inverse="lbfgs", history=3)
    # no pair yet: H_g = I, only the H_a side of the preconditioning: 3*25 + 2*16
    assert counts(kbfgs_l, model)["preconditioning"] == 75 + 32
    kbfgs_l.state[model[0].weight]["pairs_s"] = torch.zeros(1, 3)  # one pair on layer 1
    # the compact form on M: 4 p d_out (d_in + 1) = 4*1*3*5 = 60, fewer than forming H_g,
    # 4 p d_out^2 + d_out^2 (d_in + 1) = 12*3 + 9*5 = 81
    assert counts(kbfgs_l, model)["preconditioning"] == 75 + 32 + 60
    kbfgs_l.state[model[0].weight]["pairs_s"] = torch.zeros(2, 3)  # two pairs on layer 1
    # now forming H_g is fewer: 4*2*9 + 9*5 = 117 against 4*2*3*5 = 120
    assert counts(kbfgs_l, model)["preconditioning"] == 75 + 32 + 117


def test_tengrad_by_hand() -> None:
    model = mlp()
    tengrad = TENGraD(model.parameters(), model=model, inverse_every=2)
    # every 2 steps: the sampled pass 30, the N x N Grams N^2 (w + d_out) / 2:
    #   25*(5+3)/2 + 25*(4+2)/2 = 175, Cholesky N^3/3 per layer: 2*125/3
    # every step: U^T vec M and U z, 2 N d_out w, and the solves N^2, per layer:
    #   2*5*3*5 + 25 + 2*5*2*4 + 25 = 280
    assert counts(tengrad, model) == pytest.approx(
        {
            "forward_backward": FORWARD_BACKWARD,
            "statistics": (30 + 175) / 2,
            "inversion": 250 / 3 / 2,
            "preconditioning": 280,
        }
    )


def test_a_convolution_counts_its_positions() -> None:
    # Conv2d(1, 2, 3) on 5x5 images: 3x3 = 9 output positions, fan-in 9, at N = 2 the rows
    # R = 18 and P = 18*9*2 = 324 (no input gradient: the data); then Linear(18, 3), P = 108
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 3))
    shapes = layer_shapes(model, torch.randn(2, 1, 5, 5))
    assert (shapes["0"].positions, shapes["0"].rows, shapes["0"].product) == (9, 18, 324)
    kfac = KFAC(model.parameters(), model=model, inverse_every=2)
    macs = step_macs(kfac, shapes)
    assert macs is not None
    assert macs["forward_backward"] == 2 * 324 + 3 * 108
    # the pass to the outputs 108; conv Grams 18*10^2/2 + 18*2^2/2; linear 2*19^2/2 + 2*3^2/2
    assert macs["statistics"] == 108 + 900 + 36 + 361 + 9


def test_a_method_without_a_rule_has_no_floor() -> None:
    from optimizers.examples.diagonal import DiagonalFisher

    model = mlp()
    diagonal = DiagonalFisher(model.parameters(), lr=0.1)
    assert step_macs(diagonal, layer_shapes(model, torch.randn(BATCH, 4))) is None


def test_the_autoencoder_floors_are_those_counted_outside_the_project() -> None:
    problem = PROBLEMS["mnist_ae"]
    sgd = build(problem, "sgd", problem.schedule, "cpu")
    shapes = layer_shapes(sgd.model, sgd.batches.epoch(0).batch(0)[0])
    baseline = step_macs(sgd.optimizer, shapes)
    assert baseline is not None
    assert sum(baseline.values()) / 1e9 == pytest.approx(7.7, abs=0.05)
    expected = {"kfac": 2.3, "tnt": 2.6, "shampoo": 2.1, "kbfgs": 2.4}
    for name, ratio in expected.items():
        schedule = (1, 1) if name == "kbfgs" else problem.schedule
        macs = step_macs(build(problem, name, schedule, "cpu").optimizer, shapes)
        assert macs is not None
        assert sum(macs.values()) / sum(baseline.values()) == pytest.approx(ratio, abs=0.05), name


def test_the_pass_to_the_outputs_stops_at_the_first_hooked_layer() -> None:
    # K-BFGS hooks the Linear layers only: on Conv2d(1, 2, 3) -> Linear(18, 3) -> Linear(3, 2)
    # at N = 2 its second pass reaches the first Linear's output, through the second Linear's
    # input gradient alone (2*3*2 = 12): not the first Linear's input gradient (108), not
    # the convolution
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 3), nn.ReLU(), nn.Linear(3, 2)
    )
    shapes = layer_shapes(model, torch.randn(2, 1, 5, 5))
    kbfgs = KBFGS(model.parameters(), model=model)
    macs = step_macs(kbfgs, shapes)
    assert macs is not None
    forward = 324 + 108 + 12
    assert macs["forward_backward"] == (2 * 324 + 3 * 108 + 3 * 12) + forward + 12
