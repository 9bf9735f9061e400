"""Reference computations written independently of the code under test: explicit loops over
convolution positions, per-example gradients with torch.func, dense Kronecker products."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad, vmap


def per_example_output_gradients(head: nn.Module, s: Tensor, targets: Tensor) -> Tensor:
    """d loss_n / d s_n for every example n, where loss_n = CE(head(s_n), y_n): torch.func."""

    def example_loss(s_n: Tensor, y_n: Tensor) -> Tensor:
        return F.cross_entropy(head(s_n.unsqueeze(0)), y_n.unsqueeze(0))

    return vmap(grad(example_loss))(s, targets)


def patches_by_loop(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """(N, T, C*kh*kw [+1]): the receptive field of every output position, read off the padded
    input one position at a time."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
    )
    padded = F.pad(x, (pw, pw, ph, ph))
    out_h = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    rows = []
    for n in range(x.shape[0]):
        example = []
        for i in range(out_h):
            for j in range(out_w):
                top, left = i * sh, j * sw
                field = padded[
                    n, :, top : top + dh * (kh - 1) + 1 : dh, left : left + dw * (kw - 1) + 1 : dw
                ]
                patch = field.reshape(-1)
                if conv.bias is not None:
                    patch = torch.cat([patch, torch.ones(1, dtype=patch.dtype)])
                example.append(patch)
        rows.append(torch.stack(example))
    return torch.stack(rows)
