"""Kernel ``.config`` text as a mapping (pure, standard library only).

Why in the base layer: the provisioned default kernel (``images/``) and the
kernel recipe (``build/``) both read configs, and ``build/`` sits above
``images/``; one parser below both keeps the folders free of a cycle.
"""

from __future__ import annotations

import re

_SET = re.compile(r"^CONFIG_(\w+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_(\w+) is not set$")


def parse_config(text: str) -> dict[str, str]:
    """``{SYMBOL: value}``; ``n`` for ``# CONFIG_X is not set``. Pure."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _SET.match(line)
        if m:
            out[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            out[m.group(1)] = "n"
    return out
