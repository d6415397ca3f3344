"""What a guest kernel panic looked like on the console (pure).

The console shows the panic line (``Kernel panic - not syncing: ...``) and,
around it, the oops: ``RIP:`` and ``Call Trace:`` before the panic line when
an oops led to it, after it when code called ``panic()`` directly.  A report
needs the panic line first and the head of that trace under it, not 1,800
lines of console.
"""

from __future__ import annotations

import re

from pytest_sev.console.framing import strip_ansi

#: the panic line, as a console regex (bytes)
PANIC = rb"Kernel panic - not syncing[^\r\n]*"
_PANIC_TEXT = re.compile(r"Kernel panic - not syncing[^\n]*")
_TRACE_START = re.compile(r"(RIP:|Call Trace:|BUG:|Oops:|general protection fault)")
HEAD_LINES = 12


def _clean(line: str) -> str:
    return re.sub(r"^\[\s*\d+\.\d+\]\s?", "", line).rstrip()


def panic_line(text: str) -> str | None:
    """The first panic line in console *text*, or None."""
    m = _PANIC_TEXT.search(strip_ansi(text.encode()).decode(errors="replace").replace("\r", ""))
    return m.group(0).strip() if m else None


def trace_head(text: str, lines: int = HEAD_LINES) -> str:
    """The oops head around the panic: from the first RIP/Call Trace/BUG line
    of the last oops, *lines* lines (timestamps removed)."""
    rows = [_clean(x) for x in strip_ansi(text.encode()).decode(errors="replace")
            .replace("\r", "").split("\n")]
    panic_at = next((i for i, r in enumerate(rows) if "Kernel panic - not syncing" in r), len(rows))
    # the oops that led to the panic: the last trace start before it, else the first after it
    before = [i for i in range(panic_at) if _TRACE_START.search(rows[i])]
    start = None
    if before:
        start = before[0]
        for i in before:  # the last contiguous oops: a gap of >40 lines starts a new one
            if i - start > 40:
                start = i
    else:
        start = next((i for i in range(panic_at, len(rows)) if _TRACE_START.search(rows[i])), None)
    if start is None:
        return ""
    head = [r for r in rows[start:] if r.strip()][:lines]
    return "\n".join(head)
