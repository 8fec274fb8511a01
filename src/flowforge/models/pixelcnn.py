r"""PixelCNN: an autoregressive model of binary images by masked convolutions.

van den Oord, Kalchbrenner and Kavukcuoglu (2016), "Pixel Recurrent Neural Networks", ICML,
https://arxiv.org/abs/1601.06759. The pixels of an ``H x W`` image in raster order (row by row,
left to right) factorise its probability,

.. math:: p(x) = \prod_{i=1}^{HW} p(x_i \mid x_{<i}), \qquad
    p(x_i = 1 \mid x_{<i}) = \sigma(\ell_i(x_{<i})),

and one convolutional network computes all ``HW`` logits :math:`\ell_i` in a single pass:
every convolution's kernel is **masked** so that the output at a pixel sees only the pixels
before it. The first layer's mask (type A) also hides the pixel itself; the later layers'
(type B) let a pixel's features see themselves, as they were computed from the pixels before
it. With one colour channel the masks are spatial only (:class:`MaskedConv2d`): a
``k x k`` kernel keeps the rows above its centre and, in the centre row, the columns left of
the centre (and the centre itself for B). So

.. math:: \log p(x) = \sum_i x_i \log \sigma(\ell_i) + (1 - x_i) \log \sigma(-\ell_i)

is exact and costs one network evaluation. Sampling costs ``HW`` of them, one pixel at a
time, each on the window its logit sees: ``r`` rows above and columns to each side, for ``r``
the sum of the masked kernels' half-widths (``3 + blocks``), and no row below (the masks keep
later rows out); the zero padding at the window's edges reaches no further than ``r`` pixels
in, so the logit at its bottom centre is the whole image's.

The layers follow the paper's architecture table for binarized MNIST: a 7 x 7 mask-A
convolution to ``2h`` channels; the paper's PixelCNN residual blocks (ReLU, 1 x 1 convolution
to ``h``, ReLU, 3 x 3 mask-B convolution, ReLU, 1 x 1 convolution back to ``2h``, added to the
block's input); ReLU and two 1 x 1 mask-B layers (with one colour channel an ordinary 1 x 1
convolution is mask B); one sigmoid output per pixel. The paper reports 81.30 nats on
binarized MNIST (on Salakhutdinov and Murray's fixed binarization; flowforge's binarized MNIST
binarizes the training images afresh each batch and the test set once). The width and depth
are not taken from the paper: ``hidden`` (``h``) and ``blocks`` default to flowforge's choice
of 32 and 7. Stacked masked 3 x 3 kernels never reach some pixels above and to the right (the "blind
spot" of van den Oord et al.'s later Gated PixelCNN paper, 2016, https://arxiv.org/abs/1606.05328),
so the conditionals use less context than they may; they are exact all the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MaskedConv2d", "PixelCNN"]


class MaskedConv2d(nn.Conv2d):
    """A ``k x k`` convolution (``k`` odd, zero "same" padding) whose kernel sees only the
    pixels before its centre in raster order, and the centre itself when ``mask == "B"``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask: str) -> None:
        if mask not in ("A", "B"):
            raise ValueError(f"'mask' should be 'A' or 'B', got {mask!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"'kernel_size' should be odd and positive, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        c = kernel_size // 2
        keep = torch.zeros(kernel_size, kernel_size)
        keep[:c] = 1  # the rows above the centre
        keep[c, : c + (mask == "B")] = 1  # the centre row, left of the centre (B: and it)
        self.mask_type = mask
        self.register_buffer("mask", keep, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask={self.mask_type}"


class _PixelCNNResidualBlock(nn.Module):
    """The paper's PixelCNN residual block,
    ``x + conv1x1(relu(conv3x3_B(relu(conv1x1(relu(x))))))``: ``2h`` channels outside, ``h``
    inside."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(2 * hidden, hidden, 1)
        self.conv = MaskedConv2d(hidden, hidden, 3, "B")
        self.expand = nn.Conv2d(hidden, 2 * hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(F.relu(self.reduce(F.relu(x))))
        return x + self.expand(F.relu(h))


def _image_shape(event_shape: int | Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` of flattened square images (``D = H * W``), ``(H, W)`` or ``(1, H, W)``."""
    if isinstance(event_shape, int):
        side = math.isqrt(event_shape)
        if event_shape < 1 or side * side != event_shape:
            raise ValueError(
                f"PixelCNN: {event_shape} features are not a square image; "
                "give the image shape (H, W)"
            )
        return side, side
    shape = tuple(int(s) for s in event_shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(
            f"PixelCNN models one-channel images (H, W) or (1, H, W), got shape {shape}"
        )
    return shape[0], shape[1]


class PixelCNN(nn.Module):
    """PixelCNN over binary images, given as they come: flattened (``event_shape`` an int
    ``D = H * W``, square), ``(H, W)`` or ``(1, H, W)``.

    Arguments:
        event_shape: the data's shape (``784`` for binarized MNIST's flattened images).
        hidden: ``h``, the residual blocks' inner channels (``2h`` between them).
        blocks: residual blocks after the 7 x 7 mask-A convolution.
    """

    def __init__(self, event_shape: int | Sequence[int], hidden: int = 32, blocks: int = 7) -> None:
        super().__init__()
        if hidden < 1 or blocks < 0:
            raise ValueError(
                f"'hidden' should be positive and 'blocks' non-negative, got {hidden}, {blocks}"
            )
        self.height, self.width = _image_shape(event_shape)
        self.event_shape = (
            (event_shape,) if isinstance(event_shape, int) else tuple(int(s) for s in event_shape)
        )
        self.hidden, self.blocks = hidden, blocks
        self.net = nn.Sequential(
            MaskedConv2d(1, 2 * hidden, 7, "A"),
            *(_PixelCNNResidualBlock(hidden) for _ in range(blocks)),
            nn.ReLU(),
            nn.Conv2d(2 * hidden, 2 * hidden, 1),
            nn.ReLU(),
            nn.Conv2d(2 * hidden, 1, 1),
        )
        # how far a logit sees up, left and right: the masked kernels' half-widths
        self.reach = sum(
            m.kernel_size[0] // 2 for m in self.modules() if isinstance(m, MaskedConv2d)
        )

    def _image(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"PixelCNN: expected images of shape {self.event_shape}, got {tuple(x.shape[1:])}"
            )
        return x.reshape(len(x), 1, self.height, self.width)

    def logits(self, x: Tensor) -> Tensor:
        """The logits of :math:`p(x_i = 1 \\mid x_{<i})` of every pixel, ``(n, H * W)`` in
        raster order."""
        return self.net(self._image(x)).flatten(1)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The exact :math:`\\log p(x)` of binary images ``x`` ``(n, *event_shape)``: ``(n,)``."""
        if context is not None:
            raise ValueError("PixelCNN takes no context")
        if bool(((x != 0) & (x != 1)).any()):
            raise ValueError("PixelCNN models binary images: x holds values other than 0 and 1")
        target = x.reshape(len(x), -1)
        return -F.binary_cross_entropy_with_logits(self.logits(x), target, reduction="none").sum(-1)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """``n`` binary images drawn pixel by pixel in raster order (logits divided by
        ``temperature``): ``(n, *event_shape)``."""
        if context is not None:
            raise ValueError("PixelCNN takes no context")
        if n < 1 or not temperature > 0:
            raise ValueError(f"'n' and 'temperature' should be positive, got {n}, {temperature}")
        weight = self.net[-1].weight
        x = torch.zeros(n, 1, self.height, self.width, device=weight.device, dtype=weight.dtype)
        for i in range(self.height):
            for j in range(self.width):
                logit = self._logit_at(x, i, j)
                x[:, 0, i, j] = torch.bernoulli(torch.sigmoid(logit / temperature))
        return x.reshape(n, *self.event_shape)

    def _logit_at(self, x: Tensor, i: int, j: int) -> Tensor:
        """The logit of pixel ``(i, j)`` of images ``x`` ``(n, 1, H, W)``, from the window it
        sees (see the module): ``(n,)``."""
        top, left = max(0, i - self.reach), max(0, j - self.reach)
        window = x[:, :, top : i + 1, left : j + self.reach + 1]
        return self.net(window)[:, 0, i - top, j - left]

    def extra_repr(self) -> str:
        return f"image=({self.height}, {self.width}), hidden={self.hidden}, blocks={self.blocks}"
