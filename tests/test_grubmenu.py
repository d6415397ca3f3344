"""GRUB menu over serial: the screen model and parser on recorded bytes, and
choose_entry against a fake GRUB that replays a recording over a socketpair."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from pytest_sev.console.grub import DOWN, ENTER, UP, BootEntryNotFound, Screen, choose_entry, parse_menu
from pytest_sev.console.serial import Console
from pytest_sev.errors import GuestError, GuestTimeout

REC = Path(__file__).resolve().parent.parent / "fixtures" / "recorded" / "grub"
CHOOSE = (REC / "ovmf-grub-2.06-choose-sev-es.log").read_bytes()
CHOOSE_META = json.loads((REC / "ovmf-grub-2.06-choose-sev-es.json").read_text())
LOST = (REC / "ovmf-grub-2.06-serial-input-lost-keys.log").read_bytes()
ENTRIES = tuple(CHOOSE_META["entries"])
ENDS = [s["end"] for s in CHOOSE_META["segments"]]


# -- screen model ------------------------------------------------------------

def test_screen_addressing_erase_and_attributes():
    s = Screen().feed(b"junk\x1b[H\x1b[Jabc\x1b[2;5Hxy\x1b[7mZ\x1b[m.\r\nnext")
    assert s.text().splitlines() == ["abc", "    xyZ.", "next"]
    assert s.cells[(1, 6)].inverse and not s.cells[(1, 7)].inverse
    s.feed(b"\x1b[1;2H\x1b[K")
    assert s.line(0) == "a"
    s.feed(b"\x1b[2J")
    assert s.text() == ""


def test_screen_ignores_modes_and_save_restore_cursor():
    s = Screen().feed(b"\x1b[?25l\x1b[=3hab\x1b7\x1b[5;1Hzz\x1b8c\x1b[6n")
    assert s.line(0) == "abc" and s.line(4) == "zz"


def test_screen_colour_highlight_counts_as_inverse():
    # GRUB on the EFI console highlights with black on light grey.
    s = Screen().feed(b"\x1b[0m\x1b[30m\x1b[47mSEL\x1b[0m\x1b[37m\x1b[40mnorm")
    assert [s.cells[(0, x)].inverse for x in range(7)] == [True] * 3 + [False] * 4


# -- parsing recorded menus ----------------------------------------------------

def test_parse_initial_menu_from_recording():
    menu = parse_menu(CHOOSE[:ENDS[0]])
    assert menu is not None
    assert menu.entries == ENTRIES
    assert menu.selected == 0
    assert not menu.more_above and not menu.more_below


@pytest.mark.parametrize("upto, selected", [(1, 1), (2, 2)])
def test_parse_follows_each_redraw(upto, selected):
    assert parse_menu(CHOOSE[:ENDS[upto]]).selected == selected


def test_no_menu_before_grub_and_after_boot():
    assert parse_menu(CHOOSE[:CHOOSE.find(b"GNU GRUB")]) is None
    assert parse_menu(CHOOSE) is None  # GRUB cleared the screen to boot


def test_lost_keys_recording_ends_on_the_default_entry():
    # GRUB saw down then up (two of four keys were lost): highlight back on 0.
    end = LOST.find(b"\x1b[?25h")
    menu = parse_menu(LOST[:end])
    assert menu.entries == ENTRIES and menu.selected == 0
    mid = LOST.find(b"\x1b[7m\x1b[6;3H*")
    assert parse_menu(LOST[:LOST.find(b"\x1b[m", mid + 5)]).selected == 1


def _box(titles, selected, top=0, arrows=("", ""), star=True, width=60):
    """A hand-drawn GRUB 2.06-style menu (vt100) for cases not recorded."""
    out = b"\x1b[H\x1b[J\x1b[2;24HGNU GRUB  version 2.06\n\r\x1b[4;2H+" + b"-" * width + b"+"
    rows = 5
    for i in range(rows):
        out += f"\x1b[{5 + i};2H|\x1b[{5 + i};{3 + width}H|".encode()
    out += f"\x1b[{5 + rows};2H+".encode() + b"-" * width + b"+"
    for i in range(rows):
        t = titles[top + i] if top + i < len(titles) else ""
        hi = top + i == selected
        mark = "*" if (hi and star) else " "
        arrow = " "
        if i == 0 and arrows[0]:
            arrow = arrows[0]
        if i == rows - 1 and arrows[1]:
            arrow = arrows[1]
        line = (mark + t).ljust(width - 1)[:width - 1] + arrow
        out += (b"\x1b[7m" if hi else b"\x1b[m") + f"\x1b[{5 + i};3H{line}".encode() + b"\x1b[m"
    out += b"\x1b[12;2H     Use the ^ and v keys to select which entry is highlighted.\n\r"
    out += b"      Press enter to boot the selected OS, `e' to edit the commands\n\r"
    return out


def test_scrolled_menu_reports_hidden_entries():
    titles = [f"Entry {i}" for i in range(8)]
    menu = parse_menu(_box(titles, selected=3, top=2, arrows=("^", "v")))
    assert menu.entries == tuple(titles[2:7])
    assert menu.selected == 1 and menu.more_above and menu.more_below


def test_highlight_without_star_falls_back_to_reverse_video():
    menu = parse_menu(_box(["a one", "b two", "c three"], selected=2, star=False))
    assert menu.entries == ("a one", "b two", "c three") and menu.selected == 2


def test_find_is_a_regex_search():
    menu = parse_menu(CHOOSE[:ENDS[0]])
    assert menu.find(r"-sev-es$") == 2
    assert menu.find(r"recovery") == 1
    assert menu.find(r"cloud-amd64$") == 0
    assert menu.find(r"nope") is None


# -- choose_entry against a fake GRUB --------------------------------------------

class FakeGrub(threading.Thread):
    """Plays the recording: the menu, then one recorded answer per key.

    ``drop`` lists which keystrokes (by order received) to ignore, as a
    firmware driver stealing bytes from the UART would.
    """

    def __init__(self, sock: socket.socket, data: bytes, drop=()):
        super().__init__(daemon=True)
        self.sock, self.data, self.drop = sock, data, set(drop)
        self.keys: list[bytes] = []
        self.stop = False

    def run(self) -> None:
        self.sock.sendall(self.data[:ENDS[0]])
        seg, buf, n = 1, b"", 0
        self.sock.settimeout(0.1)
        while not self.stop and seg < len(ENDS):
            try:
                chunk = self.sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while buf:
                key = next((k for k in (DOWN, UP, ENTER) if buf.startswith(k)), None)
                if key is None:
                    buf = buf[1:]
                    continue
                buf = buf[len(key):]
                n += 1
                self.keys.append(key)
                if n in self.drop:
                    continue
                want = CHOOSE_META["segments"][seg]["after"]
                assert {"down": DOWN, "enter": ENTER}[want] == key, (want, key)
                self.sock.sendall(self.data[ENDS[seg - 1]:ENDS[seg]])
                seg += 1


@pytest.fixture
def console_pair(tmp_path):
    ours, theirs = socket.socketpair()
    con = Console(ours, tmp_path / "console.log", lambda exited=False: {"argv": ["qemu-fake"]})
    yield con, theirs
    con.close()
    theirs.close()


def _deadline(seconds):
    end = time.monotonic() + seconds
    return lambda: max(0.1, end - time.monotonic())


def test_choose_entry_walks_down_and_boots(console_pair):
    con, theirs = console_pair
    grub = FakeGrub(theirs, CHOOSE)
    grub.start()
    choose_entry(con, r"-sev-es$", _deadline(20), settle=0.2)
    grub.join(5)
    assert grub.keys == [DOWN, DOWN, ENTER]
    # the console goes on where GRUB left off: the guest's login prompt
    con.expect(rb"login: ", 5, "the login prompt")


def test_choose_entry_resends_a_lost_key(console_pair):
    con, theirs = console_pair
    grub = FakeGrub(theirs, CHOOSE, drop={1})
    grub.start()
    choose_entry(con, r"sev-es", _deadline(20), key_timeout=0.5, settle=0.2)
    grub.join(5)
    assert grub.keys == [DOWN, DOWN, DOWN, ENTER]


def test_choose_entry_default_needs_no_keys(console_pair):
    con, theirs = console_pair

    class Boot(FakeGrub):  # Enter right away: answer with the "enter" segment
        def run(self):
            self.sock.sendall(self.data[:ENDS[0]])
            assert self.sock.recv(8) == ENTER
            self.keys.append(ENTER)
            self.sock.sendall(self.data[ENDS[2]:])

    grub = Boot(theirs, CHOOSE)
    grub.start()
    choose_entry(con, r"cloud-amd64$", _deadline(20), settle=0.2)
    grub.join(5)
    assert grub.keys == [ENTER]


def test_choose_entry_no_match_lists_entries(console_pair):
    con, theirs = console_pair
    theirs.sendall(CHOOSE[:ENDS[0]])
    with pytest.raises(BootEntryNotFound) as err:
        choose_entry(con, r"Windows", _deadline(10), settle=0.2)
    msg = str(err.value)
    assert isinstance(err.value, GuestError)
    assert "/Windows/" in msg
    for title in ENTRIES:
        assert title in msg
    assert "qemu-fake" in msg  # carries the console's context (argv)


def test_choose_entry_times_out_without_menu(console_pair):
    con, theirs = console_pair
    theirs.sendall(b"BdsDxe: loading Boot0001\r\n")
    with pytest.raises(GuestTimeout, match=r"the GRUB menu \(to pick /x/\)"):
        choose_entry(con, r"x", _deadline(1.5), settle=0.2)


def test_bad_pattern_fails_before_waiting(console_pair):
    con, _ = console_pair
    import re
    with pytest.raises(re.error):
        # the console never prints a menu: reaching expect() would time out instead
        choose_entry(con, r"(", _deadline(30))


def test_countdown_without_a_seen_highlight_is_nudged(console_pair):
    """A menu whose highlight was never seen (hand-drawn: no '*' and no reverse
    video) while GRUB counts down: one DOWN stops the countdown and makes GRUB
    redraw the highlight, and the walk goes on from there (reconstructed screen;
    the case was seen once on a loaded machine, where the first drawing was split)."""
    con, theirs = console_pair
    titles = ["Debian GNU/Linux", "Debian GNU/Linux (recovery mode)", "Debian GNU/Linux -sev-es"]
    plain = _box(titles, selected=-1)
    theirs.sendall(plain)
    keys: list[bytes] = []

    def grub() -> None:
        theirs.settimeout(0.1)
        for n in range(6):  # a countdown line a second, until a key arrives
            theirs.sendall(f"\x1b[18;2H   The highlighted entry will be executed automatically in {5 - n}s. ".encode())
            try:
                key = theirs.recv(8)
            except TimeoutError:
                time.sleep(0.2)
                continue
            keys.append(key)
            theirs.sendall(_box(titles, selected=1))  # the redraw after DOWN
            return

    t = threading.Thread(target=grub, daemon=True)
    t.start()
    with pytest.raises(BootEntryNotFound):  # the walk went on to search the entries
        choose_entry(con, r"Windows", _deadline(10), settle=0.2)
    t.join(5)
    assert keys and keys[0] == DOWN
