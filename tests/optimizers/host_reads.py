"""Counting host reads: the calls of torch.Tensor's reading methods in a block of code (the
tests of test_host_reads.py and of the batched linear algebra, test_linalg.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import Tensor

READING_METHODS = ("item", "__float__", "__int__", "__bool__", "__index__", "tolist")


@contextmanager
def counting_reads(
    monkeypatch: pytest.MonkeyPatch, host_side: frozenset[int] = frozenset()
) -> Iterator[list[int]]:
    """Counts the calls of torch.Tensor's reading methods in the block (one-element list),
    except on the tensors whose ids are in `host_side`; the methods are restored when the
    block ends."""
    count = [0]

    def counted(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Tensor, *args: Any, **kwargs: Any) -> Any:
            count[0] += id(self) not in host_side
            return original(self, *args, **kwargs)

        return wrapper

    with monkeypatch.context() as patch:
        for name in READING_METHODS:
            patch.setattr(torch.Tensor, name, counted(getattr(torch.Tensor, name)))
        yield count
