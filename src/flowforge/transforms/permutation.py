"""Fixed permutations of dimension 1 (features of a vector, channels of an image).

A permutation has ``|det| = 1``, so ``ladj = 0``. It lives in a registered buffer, so it moves
with ``.to()`` and is saved in the ``state_dict``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowforge.transforms.base import Transform

__all__ = ["Permutation", "RandomPermutation", "ReversePermutation"]


class Permutation(Transform):
    """Reorders dimension 1: ``z[:, i] = x[:, perm[i]]``.

    Arguments:
        perm: a permutation of ``range(features)``, shape ``(features,)``.
    """

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.long)
        if perm.dim() != 1 or not torch.equal(perm.sort().values, torch.arange(perm.numel())):
            raise ValueError(f"'perm' should be a permutation of range(n), got {perm.tolist()}")
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z[:, self.inverse_perm], z.new_zeros(z.shape[0])

    def extra_repr(self) -> str:
        p = self.perm.tolist()
        return f"perm={p if len(p) <= 8 else p[:8] + ['...']}"


class ReversePermutation(Permutation):
    """Reverses dimension 1, as between the layers of MAF and RealNVP."""

    def __init__(self, features: int) -> None:
        super().__init__(torch.arange(features - 1, -1, -1))


class RandomPermutation(Permutation):
    """A fixed random permutation of dimension 1, drawn once from ``seed``."""

    def __init__(self, features: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        super().__init__(torch.randperm(features, generator=g))
