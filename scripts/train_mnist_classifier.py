"""Trains the MNIST classifier whose features the image sample-quality measures use (issue 18).

:class:`flowforge.metrics.DigitClassifier` is trained on the 60,000 MNIST training images
(flowforge's own loader, data set ``mnist``) with Adam and a cosine learning-rate schedule. Each
batch is augmented so that the classifier reads both kinds of MNIST images flowforge models
produce:

- intensities in ``[0, 1]`` (pixel / 255), the grey images of the data set ``mnist``;
- a random half of every batch binarized afresh by ``Bernoulli(intensity)``, the images of
  ``binarized_mnist``;
- every image shifted by up to 2 pixels in each direction (zero padding), for robustness to
  samples that are not centred as carefully as the data.

It is then evaluated on the 10,000 test images, grey and binarized (once, seed 0), and the
weights (float32) and metadata (test accuracies, this command, seed, torch version, feature
size) are written with ``numpy.savez`` into ``src/flowforge/metrics/mnist_classifier.npz``,
shipped in the wheel::

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/train_mnist_classifier.py --epochs 12
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from flowforge.data import load_dataset
from flowforge.data.binarized_mnist import binarize
from flowforge.metrics import DIGIT_CLASSIFIER_FILE, DigitClassifier


def shifted(x, generator, max_shift=2):
    """Each image moved by its own integer offset in ``[-max_shift, max_shift]^2``."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1, 1), generator=generator)
    rows = (torch.arange(h).view(1, h, 1) + dy).expand(n, h, w)
    cols = (torch.arange(w).view(1, 1, w) + dx).expand(n, h, w)
    index = torch.arange(n).view(n, 1, 1).expand(n, h, w)
    return padded[index, 0, rows, cols].unsqueeze(1)


def augmented(x, generator):
    """Shifted, and a random half binarized by Bernoulli sampling."""
    x = shifted(x, generator)
    binary = torch.rand(len(x), 1, 1, 1, generator=generator) < 0.5
    return torch.where(binary, binarize(x, generator), x)


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    right = sum(
        int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
        for i in range(0, len(x), batch)
    )
    return right / len(x)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-images", type=int, default=60000, help="a seeded subset of N (smoke runs)"
    )
    parser.add_argument("--out", type=Path, default=DIGIT_CLASSIFIER_FILE)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    splits = load_dataset("mnist", n_train=args.train_images, n_val=0, n_test=10000, seed=args.seed)
    x_train, y_train = splits.train / 255, torch.from_numpy(splits.info["labels"]["train"])
    x_test, y_test = splits.test / 255, torch.from_numpy(splits.info["labels"]["test"])
    x_test_binary = binarize(x_test, torch.Generator().manual_seed(0))

    model = DigitClassifier(features=args.features)
    steps = args.epochs * (len(x_train) // args.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    g = torch.Generator().manual_seed(args.seed)
    start, step = time.perf_counter(), 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(x_train), generator=g)
        for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
            idx = order[i : i + args.batch_size]
            loss = F.cross_entropy(model(augmented(x_train[idx], g)), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step % 100 == 0:
                print(
                    f"epoch {epoch} step {step}/{steps} loss {loss.item():.4f} "
                    f"{time.perf_counter() - start:.0f} s",
                    flush=True,
                )
    seconds = time.perf_counter() - start

    model.eval()
    meta = {
        "architecture": "flowforge.metrics.DigitClassifier",
        "features": args.features,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_accuracy_grey": accuracy(model, x_test, y_test),
        "test_accuracy_binarized": accuracy(model, x_test_binary, y_test),
        "test_images": len(x_test),
        "test_binarization_seed": 0,
        "train_images": len(x_train),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
        "command": "python scripts/train_mnist_classifier.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "augmentation": "shifts of up to 2 pixels; a random half of each batch binarized",
    }
    arrays = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
