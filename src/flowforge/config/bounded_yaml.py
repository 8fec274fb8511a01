"""Reading YAML with bounded aliases: a few hundred bytes of aliases ("billion laughs") can
stand for 10**9 values, so every config, comparison spec and ``--set`` value is sized before any
Python object is built, and any failure is a one-line :class:`~flowforge.config.ConfigError`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flowforge.config.errors import ConfigError

__all__ = ["MAX_YAML_CHARS", "MAX_YAML_VALUES", "load_yaml", "read_yaml"]

MAX_YAML_VALUES = 100_000
"""Most values (scalars, lists, mappings) a YAML document may expand to through aliases."""

MAX_YAML_CHARS = 10_000_000
"""Most characters of scalar text a YAML document may expand to through aliases: one long
string referenced many times is few values but much text, which writing the config back
(``config.yaml``, the deep copy of :func:`apply_overrides`) spells out at every use."""


class _YamlTooLarge(yaml.YAMLError):
    """A document that expands past :data:`MAX_YAML_VALUES` values or :data:`MAX_YAML_CHARS`
    characters, or expands into itself."""


def _expanded_size(node: yaml.Node, sizes: dict[int, tuple[int, int] | None]) -> tuple[int, int]:
    """The values and the characters of scalar text ``node`` expands to, each aliased node
    counted at every use (memoised in ``sizes``, so a nine-level alias bomb costs nine steps,
    not 9**9)."""
    if id(node) in sizes:
        size = sizes[id(node)]
        if size is None:
            raise _YamlTooLarge("an alias refers to a node that contains it")
        return size
    sizes[id(node)] = None
    children = node.value if isinstance(node, yaml.SequenceNode) else []
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    values, chars = 1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0
    for child in children:
        v, c = _expanded_size(child, sizes)
        values, chars = values + v, chars + c
    if values > MAX_YAML_VALUES:
        raise _YamlTooLarge(f"expands to more than {MAX_YAML_VALUES} values through aliases")
    if chars > MAX_YAML_CHARS:
        raise _YamlTooLarge(
            f"expands to more than {MAX_YAML_CHARS:,} characters of text (aliases counted at "
            f"every use)"
        )
    sizes[id(node)] = values, chars
    return values, chars


class _BoundedLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """``yaml.SafeLoader`` (libyaml's parser where PyYAML has it: a 500 KB document of
    aliases parses in 0.1 s, not 1.5 s) that sizes the composed document before building any
    Python object: aliases share nodes, so a few hundred bytes ("billion laughs") can stand
    for 10**9 values, which any deep copy, dump or repr would then build."""

    def construct_document(self, node: yaml.Node) -> Any:
        _expanded_size(node, {})
        return super().construct_document(node)


def load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` with the alias bound; any failure is a one-line ``ConfigError``
    starting with ``where``."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader: no Python objects
    except _YamlTooLarge as e:
        raise ConfigError(f"{where}: refused: the YAML {e}") from None
    except yaml.YAMLError as e:
        if "maximum nesting depth" in str(e):  # libyaml's own bound
            raise ConfigError(f"{where}: refused: the YAML is nested too deeply") from None
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ConfigError(f"{where}: refused: the YAML is nested too deeply") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping, read with the alias bound of :func:`load_yaml`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    raw = load_yaml(text, str(path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: should hold a mapping of sections, got {type(raw).__name__}")
    return raw
