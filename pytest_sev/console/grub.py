"""Pick a GRUB menu entry over the serial console.

GRUB draws its text menu on a serial terminal with cursor addressing and
attributes (``ESC[row;colH``, ``ESC[7m`` reverse video, ``ESC[H ESC[J``
clears), redrawing only what changes, so the entry list cannot be read off
the byte stream line by line.  :class:`Screen` is a small terminal model
(enough of VT100/ANSI for GRUB and for OVMF's terminal driver) and
:func:`parse_menu` reads the menu box off it: the titles, which one is
highlighted (GRUB marks it with ``*``; reverse video or inverted colours as a
fallback) and whether more entries are scrolled out of view.  Both are pure
functions over recorded console bytes (``fixtures/recorded/grub/``).

:func:`choose_entry` drives a live console: wait for the menu, find the entry
matching a regex, move the highlight one arrow key (``ESC[B`` / ``ESC[A``) at
a time, confirming each move on the redrawn screen (keys can be lost on a
serial line a firmware driver also polls; a lost key is re-sent), and press
Enter once the highlight is on the entry.  When no entry matches, it fails
with :class:`BootEntryNotFound` naming the pattern and every entry it saw.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_sev.deadline import Deadline
from pytest_sev.errors import GuestError, GuestTimeout

DOWN = b"\x1b[B"
UP = b"\x1b[A"
ENTER = b"\r"

#: GRUB's countdown line, printed once a second while nobody presses a key.
COUNTDOWN = rb"executed automatically in"
#: Text GRUB's menu always shows under the box (English locale).
MENU_PATTERNS = [rb"Press enter to boot the selected OS", COUNTDOWN,
                 rb"to select which entry is highlighted"]
#: A redrawn highlighted entry: the ``*`` marker and the title, up to the
#: next control byte (so the whole title has arrived).
HIGHLIGHT_REDRAW = rb"\*[^\x00-\x1f]*[\x00-\x1f]"
#: The screen clear GRUB sends when it leaves the menu to run an entry.
CLEARED = rb"\x1b\[H\x1b\[J|\x1b\[2J"

_CSI = re.compile(r"\x1b\[([?=>]?)([0-9;]*)([ -/]*)([@-~])")
_TOP = re.compile(r"[+┌╔]([-─═]{8,})[+┐╗]")
_BOTTOM = re.compile(r"[+└╚]([-─═]{8,})[+┘╝]")
_UP_ARROWS = "^↑"
_DOWN_ARROWS = "v↓"
_MAX_ROWS, _MAX_COLS = 200, 400


class BootEntryNotFound(GuestError):
    """No entry of the boot menu matches the requested pattern."""


@dataclass
class Cell:
    ch: str = " "
    inverse: bool = False


class Screen:
    """A terminal screen fed with bytes; unbounded in size, no line wrap.

    Understood: printable text, CR/LF/BS/TAB, CSI cursor moves (``H f A B C
    D G d``), erase (``J K``), SGR (reverse video, colours), ESC 7/8 and
    ESC c.  Anything else is consumed and ignored.
    """

    def __init__(self) -> None:
        self.cells: dict[tuple[int, int], Cell] = {}
        self.row = 0
        self.col = 0
        self._saved = (0, 0)
        self._inverse = False
        self._fg: int | None = None
        self._bg: int | None = None

    # -- attributes ----------------------------------------------------------
    def _highlighted(self) -> bool:
        # GRUB on an EFI console highlights with colours: dark text on a light
        # background (ESC[30m ESC[47m) instead of reverse video.
        dark_on_light = self._fg is not None and self._bg is not None and self._fg in (0, 8) \
            and self._bg in (7, 15)
        return self._inverse != dark_on_light

    def _sgr(self, params: list[int]) -> None:
        for p in params or [0]:
            if p == 0:
                self._inverse, self._fg, self._bg = False, None, None
            elif p == 7:
                self._inverse = True
            elif p == 27:
                self._inverse = False
            elif 30 <= p <= 37:
                self._fg = p - 30
            elif 90 <= p <= 97:
                self._fg = p - 90 + 8
            elif p == 39:
                self._fg = None
            elif 40 <= p <= 47:
                self._bg = p - 40
            elif 100 <= p <= 107:
                self._bg = p - 100 + 8
            elif p == 49:
                self._bg = None

    # -- editing -------------------------------------------------------------
    def _put(self, ch: str) -> None:
        if self.row < _MAX_ROWS and self.col < _MAX_COLS:
            self.cells[(self.row, self.col)] = Cell(ch, self._highlighted())
        self.col += 1

    def _erase(self, pred: Callable[[int, int], bool]) -> None:
        for key in [k for k in self.cells if pred(*k)]:
            del self.cells[key]

    def _csi(self, private: str, params_s: str, final: str) -> None:
        if private:  # ESC[?25l, ESC[=3h, ...: modes, not drawing
            return
        params = [int(p) if p else 0 for p in params_s.split(";")] if params_s else []

        def arg(i: int, default: int = 1) -> int:
            return params[i] if len(params) > i and params[i] else default

        if final in "Hf":
            self.row, self.col = arg(0) - 1, arg(1) - 1
        elif final == "A":
            self.row = max(0, self.row - arg(0))
        elif final == "B":
            self.row += arg(0)
        elif final == "C":
            self.col += arg(0)
        elif final == "D":
            self.col = max(0, self.col - arg(0))
        elif final == "G":
            self.col = arg(0) - 1
        elif final == "d":
            self.row = arg(0) - 1
        elif final == "J":
            mode = arg(0, 0)
            r, c = self.row, self.col
            if mode == 0:
                self._erase(lambda y, x: y > r or (y == r and x >= c))
            elif mode == 1:
                self._erase(lambda y, x: y < r or (y == r and x <= c))
            else:
                self.cells.clear()
        elif final == "K":
            mode = arg(0, 0)
            r, c = self.row, self.col
            if mode == 0:
                self._erase(lambda y, x: y == r and x >= c)
            elif mode == 1:
                self._erase(lambda y, x: y == r and x <= c)
            else:
                self._erase(lambda y, x: y == r)
        elif final == "m":
            self._sgr(params)

    def feed(self, data: bytes) -> Screen:
        text = data.decode("utf-8", errors="replace")
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch == "\x1b":
                m = _CSI.match(text, i)
                if m:
                    self._csi(m.group(1), m.group(2), m.group(4))
                    i = m.end()
                    continue
                nxt = text[i + 1:i + 2]
                if nxt == "7":
                    self._saved = (self.row, self.col)
                elif nxt == "8":
                    self.row, self.col = self._saved
                elif nxt == "c":
                    self.cells.clear()
                    self.row = self.col = 0
                i += 2 if nxt else 1
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch == "\t":
                self.col = (self.col // 8 + 1) * 8
            elif ch >= " " and ch != "\x7f":
                self._put(ch)
            i += 1
        return self

    # -- reading -------------------------------------------------------------
    def line(self, row: int) -> str:
        cols = [x for (y, x) in self.cells if y == row]
        if not cols:
            return ""
        return "".join(self.cells.get((row, x), Cell()).ch for x in range(max(cols) + 1))

    def inverse_ratio(self, row: int, start: int, end: int) -> float:
        cells = [self.cells.get((row, x)) for x in range(start, end)]
        marked = [c for c in cells if c is not None and c.ch != " "]
        if not marked:
            return 0.0
        return sum(c.inverse for c in marked) / len(marked)

    def rows(self) -> list[int]:
        return sorted({y for (y, _) in self.cells})

    def text(self) -> str:
        if not self.cells:
            return ""
        return "\n".join(self.line(r).rstrip() for r in range(max(self.rows()) + 1))


@dataclass(frozen=True)
class GrubMenu:
    """The visible part of a GRUB menu."""

    entries: tuple[str, ...]
    selected: int | None
    more_above: bool = False
    more_below: bool = False
    rows: tuple[int, ...] = field(default=(), compare=False)

    def find(self, pattern: str) -> int | None:
        rx = re.compile(pattern)
        for i, title in enumerate(self.entries):
            if rx.search(title):
                return i
        return None


def menu_from_screen(screen: Screen) -> GrubMenu | None:
    """Read the menu box off *screen*; None when no complete box is drawn."""
    lines = {r: screen.line(r) for r in screen.rows()}
    top = next(((r, m) for r, ln in lines.items() if (m := _TOP.search(ln))), None)
    if top is None:
        return None
    top_row, tm = top
    left, right = tm.start(), tm.end() - 1
    bottom = next((r for r, ln in lines.items() if r > top_row and _BOTTOM.search(ln)), None)
    if bottom is None:
        return None
    titles: list[str] = []
    rows: list[int] = []
    starred: int | None = None
    inverse: list[float] = []
    more_above = more_below = False
    for r in range(top_row + 1, bottom):
        ln = lines.get(r, "").ljust(right + 1)
        inner = ln[left + 1:right]
        if len(inner) < 3:
            continue
        marker, title, arrow = inner[0], inner[1:-1].rstrip(), inner[-1]
        if r == top_row + 1 and arrow in _UP_ARROWS:
            more_above = True
        if r == bottom - 1 and arrow in _DOWN_ARROWS:
            more_below = True
        if not title.strip():
            continue
        if marker == "*":
            starred = len(titles)
        titles.append(title.strip())
        rows.append(r)
        inverse.append(screen.inverse_ratio(r, left + 1, right))
    if not titles:
        return None
    selected = starred
    if selected is None and inverse and max(inverse) > 0.5:
        selected = inverse.index(max(inverse))
    return GrubMenu(tuple(titles), selected, more_above, more_below, tuple(rows))


def parse_menu(data: bytes) -> GrubMenu | None:
    """The GRUB menu as the console bytes *data* leave it on the screen."""
    return menu_from_screen(Screen().feed(data))


# --------------------------------------------------------------------------
# driving a live console

def _not_found(console, pattern: str, seen: list[str]) -> None:
    listing = "\n".join(f"  {t}" for t in seen) or "  (none)"
    what = f"no GRUB menu entry matches /{pattern}/"
    detail = f"entries seen:\n{listing}"
    fail = getattr(console, "fail", None)
    if fail is not None:  # carries the console tail, argv and log paths
        fail(BootEntryNotFound, what, detail)
    raise BootEntryNotFound(what, detail=detail, console_tail=console.tail())


class _Reader:
    """Everything the console printed since the menu started, as a screen."""

    def __init__(self, console, left: Callable[[], float]) -> None:
        self.console = console
        self.left = left
        self.data = b""

    def take(self) -> None:
        self.data += self.console.before + self.console.match.group(0)

    def expect(self, patterns: list[bytes], timeout: float, what: str) -> int:
        idx = self.console.expect(patterns, min(timeout, self.left()), what)
        self.take()
        return idx

    def until_quiet(self, quiet: float, limit: float) -> None:
        """Read until the console says nothing for *quiet* seconds (at most *limit*)."""
        deadline = Deadline(limit)
        while not deadline.expired:
            try:
                self.console.expect([rb"[\s\S]+"], quiet, "more menu output")
            except GuestTimeout:
                return
            self.take()

    def menu(self) -> GrubMenu | None:
        return parse_menu(self.data)


def choose_entry(console, pattern: str, left: Callable[[], float], *,
                 key_timeout: float = 5.0, settle: float = 0.7) -> None:
    """Boot the GRUB entry whose title matches the regex *pattern*.

    *left()* gives the seconds left of the caller's deadline; every wait is
    bounded by it.  Raises :class:`~pytest_sev.errors.GuestTimeout` (from
    ``console.expect``) when no menu appears, :class:`BootEntryNotFound`
    (listing the entries seen) when nothing matches.
    """
    re.compile(pattern)  # a bad regex fails here, before any waiting
    rd = _Reader(console, left)
    rd.expect(MENU_PATTERNS, left(), f"the GRUB menu (to pick /{pattern}/)")
    rd.until_quiet(settle, limit=10)
    menu = rd.menu()
    nudged = False
    while menu is None or menu.selected is None:  # still drawing
        idx = rd.expect([HIGHLIGHT_REDRAW, COUNTDOWN], left(), f"the GRUB menu's entries (to pick /{pattern}/)")
        rd.until_quiet(settle, limit=10)
        menu = rd.menu()
        if idx == 1 and not nudged and (menu is None or menu.selected is None):
            # GRUB is counting down and the highlight was not seen (a slow read can split its
            # first drawing): a key stops the countdown and makes GRUB redraw the highlight
            console.send(DOWN)
            nudged = True
    seen: list[str] = list(menu.entries)
    target = menu.find(pattern)
    budget = 3 * (len(menu.entries) + 5)  # keystrokes, lost ones re-sent included
    while target is None:  # scroll down through entries hidden below the box
        if not menu.more_below or budget <= 0:
            _not_found(console, pattern, seen)
        menu = _press(rd, DOWN, menu, key_timeout, settle)
        budget -= 1
        seen += [t for t in menu.entries if t not in seen]
        target = menu.find(pattern)
    assert target is not None  # found above, or _not_found raised
    while menu.selected != target:
        if budget <= 0:
            raise GuestTimeout(
                f"the GRUB highlight did not reach {menu.entries[target]!r} "
                f"(stuck on {menu.entries[menu.selected] if menu.selected is not None else 'nothing'!r})",
                console_tail=console.tail())
        key = DOWN if menu.selected is None or target > menu.selected else UP
        title = menu.entries[target]
        menu = _press(rd, key, menu, key_timeout, settle)
        budget -= 1
        found = menu.find(pattern) if title not in menu.entries else menu.entries.index(title)
        if found is None:
            _not_found(console, pattern, seen)
        assert found is not None
        target = found
    console.send(ENTER)
    rd.expect([CLEARED], key_timeout * 2,
              f"GRUB to start {menu.entries[target]!r} after Enter")


def _press(rd: _Reader, key: bytes, menu: GrubMenu, key_timeout: float,
           settle: float) -> GrubMenu:
    """Send one arrow key and return the redrawn menu (unchanged if the key was lost)."""
    rd.console.send(key)
    try:
        rd.expect([HIGHLIGHT_REDRAW], key_timeout, "GRUB to redraw the highlighted entry")
    except GuestTimeout:
        return menu  # lost key (or already at the end): the caller re-sends
    rd.until_quiet(min(settle, 0.3), limit=5)
    return rd.menu() or menu


__all__ = ["BootEntryNotFound", "GrubMenu", "Screen", "choose_entry", "menu_from_screen",
           "parse_menu"]
