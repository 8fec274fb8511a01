"""The error of a config that cannot run, and values quoted in its messages at bounded length."""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config that cannot run: the message names the field and what is allowed."""


def _brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, without building the whole repr:
    a value holding one list many times over (YAML aliases) costs ``limit`` steps, not its
    expanded size."""
    out: list[str] = []
    _render(value, out, limit + 1)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_BRACKETS = {list: "[]", tuple: "()", dict: "{}", set: "{}", frozenset: "{}"}


def _render(value: Any, out: list[str], budget: int) -> int:
    """Appends ``value``'s repr to ``out`` until about ``budget`` characters are spent;
    returns the budget left."""
    if budget <= 0:
        return 0
    kind = next((k for k in _BRACKETS if isinstance(value, k)), None)
    if kind is None:
        text = _scalar_repr(value, budget)
        out.append(text)
        return budget - len(text)
    out.append(_BRACKETS[kind][0])
    budget -= 1
    for i, item in enumerate(value.items() if kind is dict else value):
        if budget <= 0:
            return 0
        if i:
            out.append(", ")
            budget -= 2
        if kind is dict:
            budget = _render(item[0], out, budget)
            out.append(": ")
            budget = _render(item[1], out, budget - 2)
        else:
            budget = _render(item, out, budget)
    out.append(_BRACKETS[kind][1])
    return budget - 1


def _scalar_repr(value: Any, budget: int) -> str:
    """The repr of a non-container, from at most ``budget`` characters of a long string."""
    if isinstance(value, (str, bytes)):
        return repr(value[:budget])
    if isinstance(value, int) and value.bit_length() > 128:  # repr refuses > 4300 digits
        return f"<{value.bit_length()}-bit integer>"
    return repr(value)[:budget]
