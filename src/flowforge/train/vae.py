r"""Training and evaluating VAEs (:class:`~flowforge.models.vae.VAE`) on binarized MNIST.

``train_vae(config)`` trains by the ELBO or the IWAE bound with Adam on dynamically binarized
batches, then reports on the fixed test binarization the ELBO and the importance-sampled
``-log p(x)`` with ``eval.k`` samples on the first ``eval.n`` test images. Config (a dict, e.g.
from YAML, or a :class:`VAEConfig`)::

    name: vae_planar10
    seed: 0
    data: {name: binarized_mnist, n_train: 50000, n_val: 1000, n_test: 10000, seed: 0}
    model: {name: vae, latent: 40, hidden: [300, 300], activation: relu,
            posterior: {name: planar, layers: 10}}
    train: {steps: 20000, batch_size: 100, lr: 0.001, objective: elbo, k: 1, warmup: 10000}
    eval: {k: 1000, n: 2000}

``train.warmup`` (0: off) is the length of the KL warm-up (Sønderby et al. 2016,
https://arxiv.org/abs/1602.02282): at step ``t`` the training bound weights
``log p(z) - log q(z | x)`` by :math:`\beta_t = \min(1, 0.01 + t / \mathrm{warmup})`, Rezende
and Mohamed's (2015) schedule (:func:`~flowforge.train.objectives.anneal_beta`); evaluation
always uses ``beta = 1``.

With an ``out_dir``, the run writes ``<out_dir>/<name>/`` with ``config.yaml``,
``metrics.jsonl``, ``model.pt`` (a ``state_dict``) and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from flowforge.data.binarized_mnist import binarize
from flowforge.data.registry import load_dataset
from flowforge.models.vae import VAE
from flowforge.train.objectives import anneal_beta

__all__ = ["VAEConfig", "train_vae"]


@dataclass
class VAEConfig:
    """Every option of a VAE run, flat; :meth:`from_dict` reads the nested YAML form."""

    name: str = "vae"
    seed: int = 0
    data: str = "binarized_mnist"
    n_train: int = 50000
    n_val: int = 1000
    n_test: int = 10000
    data_path: str | None = None
    data_seed: int = 0
    latent: int = 40
    hidden: tuple[int, ...] = (300, 300)
    activation: str = "relu"
    posterior: str = "gaussian"
    flow_layers: int = 0
    steps: int = 20000
    batch_size: int = 100
    lr: float = 1e-3
    objective: str = "elbo"
    k: int = 1
    warmup: int = 0
    eval_every: int = 2000
    eval_k: int = 1000
    eval_n: int = 2000

    _SECTIONS = {
        "data": {
            "name": "data",
            "n_train": "n_train",
            "n_val": "n_val",
            "n_test": "n_test",
            "path": "data_path",
            "seed": "data_seed",
        },
        "model": {
            "latent": "latent",
            "hidden": "hidden",
            "activation": "activation",
        },
        "train": {
            "steps": "steps",
            "batch_size": "batch_size",
            "lr": "lr",
            "objective": "objective",
            "k": "k",
            "warmup": "warmup",
            "eval_every": "eval_every",
        },
        "eval": {"k": "eval_k", "n": "eval_n"},
    }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VAEConfig:
        """Reads ``{name, seed, data: {...}, model: {name: vae, ..., posterior: {name, layers}},
        train: {...}, eval: {k, n}}``; unknown keys raise a ``ValueError`` naming them."""
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key in ("name", "seed"):
                values[key] = value
            elif key in cls._SECTIONS:
                if not isinstance(value, dict):
                    raise ValueError(f"{key}: should be a mapping, got {value!r}")
                section = dict(value)
                if key == "model":
                    if section.pop("name", "vae") != "vae":
                        raise ValueError("model.name: should be 'vae'")
                    post = section.pop("posterior", {"name": "gaussian"})
                    if isinstance(post, str):
                        post = {"name": post}
                    unknown = set(post) - {"name", "layers"}
                    if unknown:
                        raise ValueError(f"model.posterior: unknown key(s) {sorted(unknown)}")
                    values["posterior"] = post.get("name", "gaussian")
                    values["flow_layers"] = post.get("layers", 0)
                for sub, sub_value in section.items():
                    if sub not in cls._SECTIONS[key]:
                        raise ValueError(
                            f"{key}.{sub}: unknown key; allowed: {sorted(cls._SECTIONS[key])}"
                        )
                    values[cls._SECTIONS[key][sub]] = sub_value
            else:
                raise ValueError(f"{key}: unknown top-level key")
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def build_vae(cfg: VAEConfig, data_dim: int = 784) -> VAE:
    """The configured :class:`VAE`."""
    return VAE(data_dim, cfg.latent, cfg.hidden, cfg.activation, cfg.posterior, cfg.flow_layers)


def train_vae(
    config: VAEConfig | dict[str, Any],
    out_dir: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Trains and evaluates a VAE; returns the summary (also written when ``out_dir`` is set).

    The summary holds the test ``elbo``, ``nll`` (``-log p(x)``, importance-sampled with
    ``eval_k`` samples on the first ``eval_n`` test images) and its standard error, the
    number of parameters, steps and seconds.
    """
    cfg = config if isinstance(config, VAEConfig) else VAEConfig.from_dict(config)
    for name in ("steps", "batch_size", "k", "eval_every", "eval_k", "eval_n"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"'{name}' should be positive, got {getattr(cfg, name)}")
    if cfg.warmup < 0:
        raise ValueError(f"'warmup' should be >= 0 (0: off), got {cfg.warmup}")
    if cfg.objective not in ("elbo", "iwae"):
        raise ValueError(f"'objective' should be 'elbo' or 'iwae', got {cfg.objective!r}")
    options = {} if cfg.data_path is None else {"path": cfg.data_path}
    # the data seed fixes the test binarization, the same for every training seed
    splits = load_dataset(cfg.data, cfg.n_train, cfg.n_val, cfg.n_test, cfg.data_seed, **options)
    torch.manual_seed(cfg.seed)
    model = build_vae(cfg, splits.train.shape[1])
    run_dir = None
    if out_dir is not None:
        run_dir = Path(out_dir) / cfg.name
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    records, start = [], time.perf_counter()
    for step in range(cfg.steps):
        model.train()
        idx = torch.randint(len(splits.train), (cfg.batch_size,), generator=g)
        beta = anneal_beta(step, 0.01, cfg.warmup) if cfg.warmup else 1.0
        loss = model.loss(binarize(splits.train[idx], g), cfg.objective, cfg.k, beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            model.eval()
            val = model.evaluate(splits.val, k=1)
            record = {
                "step": step + 1,
                "train_loss": float(loss.detach()),
                "beta": beta,
                "val_elbo": val["elbo"],
                "seconds": time.perf_counter() - start,
            }
            records.append(record)
            if progress is not None:
                progress(record)
    seconds = time.perf_counter() - start
    model.eval()
    test = model.evaluate(splits.test[: cfg.eval_n], k=cfg.eval_k)
    summary = {
        "name": cfg.name,
        "posterior": cfg.posterior,
        "flow_layers": cfg.flow_layers,
        "objective": cfg.objective,
        "k": cfg.k,
        "warmup": cfg.warmup,
        "lr": cfg.lr,
        "latent": cfg.latent,
        "steps": cfg.steps,
        "seed": cfg.seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": seconds,
        "test_elbo": test["elbo"],
        "test_nll": -test["log_px"],
        "test_nll_stderr": test["log_px_stderr"],
        "eval_k": cfg.eval_k,
        "eval_n": test["n"],
    }
    if run_dir is not None:
        with open(run_dir / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        torch.save(model.state_dict(), run_dir / "model.pt")
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not math.isfinite(summary["test_nll"]):
        raise RuntimeError(f"VAE run {cfg.name!r}: the test estimate is not finite")
    return summary
