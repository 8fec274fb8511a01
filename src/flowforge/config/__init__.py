"""Run configurations: YAML files validated up front, with errors that name the field.

A config has four sections beside ``name``, ``seed``, ``device`` and ``output_dir``::

    name: realnvp-parabola
    seed: 0
    objective: {name: mle}                                                # + objective options
    data:  {name: parabola, n_train: 20000, n_val: 5000, n_test: 20000}   # + loader options
    model: {name: realnvp, couplings: 5, hidden: [32, 32]}                # + recipe options
    train: {steps: 3000, batch_size: 512, lr: 0.001}

``objective``, ``data`` and ``model`` options beyond the fixed keys are checked against the
registered objective's, loader's and recipe's signatures, so a typo fails before any work
starts. Objectives that read no data (``reverse_kl``, ``distill``) take no ``data`` section.
``--set a.b=value`` overrides any key (the value is parsed as YAML).


Where things are: the sections, their checks and :func:`load_config` in
:mod:`flowforge.config.schema`; YAML read with bounded aliases in
:mod:`flowforge.config.bounded_yaml`; :class:`ConfigError` in :mod:`flowforge.config.errors`.
Every public name is re-exported here.
"""

from flowforge.config.bounded_yaml import MAX_YAML_CHARS, MAX_YAML_VALUES, load_yaml, read_yaml
from flowforge.config.errors import ConfigError, _brief  # noqa: F401  (_brief: compare.py's)
from flowforge.config.schema import (
    OPTIMIZERS,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    check_name,
    load_config,
    parse_config,
    registered_names,
)

__all__ = [
    "MAX_YAML_CHARS",
    "MAX_YAML_VALUES",
    "OPTIMIZERS",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "check_name",
    "load_config",
    "load_yaml",
    "parse_config",
    "read_yaml",
    "registered_names",
]
