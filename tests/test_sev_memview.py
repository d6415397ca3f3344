"""Host memory view: marker search and entropy on real generated files."""

import os
import shutil
import subprocess

import pytest

from pytest_sev.sev import memview as M

MARK = "0123456789abcdef0123456789abcdef"


def write(path, chunks):
    with open(path, "wb") as fh:
        for c in chunks:
            fh.write(c)
    return path


def plaintext_page(i):
    text = (f"line {i} of some kernel text; struct page at ffff8880{i:08x}\n" * 200).encode()
    return text[:M.PAGE].ljust(M.PAGE, b"\0")


def test_find_marker_across_chunk_boundary(tmp_path):
    mb = MARK.encode()
    chunk = 4096
    for cut in range(1, len(mb)):
        start = chunk - cut
        data = bytearray(3 * chunk)
        data[start:start + len(mb)] = mb
        p = write(tmp_path / f"d{cut}", [bytes(data)])
        assert M.find_marker(p, mb, chunk=chunk) == [start]


def test_find_marker_overlapping_and_many(tmp_path):
    p = write(tmp_path / "d", [b"aaaa"])
    assert M.find_marker(p, b"aa", chunk=2) == [0, 1, 2]
    data = (b"\0" * 1000 + MARK.encode()) * 50
    p = write(tmp_path / "e", [data])
    offs = M.find_marker(p, MARK.encode(), chunk=4096)
    assert len(offs) == 50 and offs[0] == 1000
    assert M.find_marker(p, MARK.encode(), chunk=4096, limit=5) == offs[:5]
    with pytest.raises(ValueError):
        M.find_marker(p, b"")


def test_entropy_values(tmp_path):
    assert M.entropy(b"") == 0.0
    assert M.entropy(b"\0" * 4096) == 0.0
    assert M.entropy(bytes(range(256)) * 16) == pytest.approx(8.0)
    p = write(tmp_path / "r", [os.urandom(M.PAGE * 2)])
    assert M.page_entropy(p, M.PAGE + 7) > 7.9


def test_plain_dump_marker_visible(tmp_path):
    """Mostly zero pages, plaintext pages and a tmpfs-like run of marker lines."""
    pages = [b"\0" * M.PAGE] * 64 + [plaintext_page(i) for i in range(64)]
    pages.insert(100, ((MARK + "\n") * 124).encode().ljust(M.PAGE, b"\0"))
    p = write(tmp_path / "plain.bin", pages)
    w = M.evaluate_dump(p, MARK.encode())
    assert w.encrypted is False and w.found == 124
    assert w.entropy_at_marker < 4.5
    assert w.sampled_entropy < 6
    assert "visible" in w.evidence


def test_encrypted_dump(tmp_path):
    """Zero (untouched) pages and ciphertext pages; the marker is nowhere."""
    pages = []
    for i in range(256):
        pages.append(os.urandom(M.PAGE) if i % 3 else b"\0" * M.PAGE)
    p = write(tmp_path / "enc.bin", pages)
    w = M.evaluate_dump(p, MARK.encode())
    assert w.encrypted is True and w.found == 0 and w.entropy_at_marker is None
    assert w.sampled_entropy > 7.9 and w.samples >= M.MIN_SAMPLES


def test_absent_marker_in_plaintext_is_unknown(tmp_path):
    p = write(tmp_path / "p.bin", [plaintext_page(i) for i in range(64)])
    w = M.evaluate_dump(p, MARK.encode())
    assert w.encrypted is None and "plaintext" in w.evidence


def test_absent_marker_without_ack_is_unknown(tmp_path):
    p = write(tmp_path / "enc.bin", [os.urandom(M.PAGE) for _ in range(64)])
    assert M.evaluate_dump(p, MARK.encode(), marker_written=False).encrypted is None


def test_too_few_pages_is_unknown(tmp_path):
    p = write(tmp_path / "z.bin", [b"\0" * M.PAGE] * 64 + [os.urandom(M.PAGE)] * 2)
    assert M.evaluate_dump(p, MARK.encode()).encrypted is None


def test_sampling_skips_constant_pages(tmp_path):
    p = write(tmp_path / "c.bin", [b"\xff" * M.PAGE] * 10 + [b"\0" * M.PAGE] * 10)
    assert M.sample_page_entropies(p) == []


def test_verdict_found_wins_over_entropy():
    w = M.verdict([0x1000], 0.8, [7.95] * 100)
    assert w.encrypted is False and w.first_offset == 0x1000


def test_marker_helpers():
    m = M.new_marker()
    assert len(m) == 32 and int(m, 16) >= 0
    assert M.marker_bytes(MARK) == MARK.encode()
    assert M.parse_marker_ack("x\r\nSEVMARK ok bytes=33792\r\n") == 33792
    assert M.parse_marker_ack("SEVMARK err=marker not written") is None
    for bad in ("xyz", "abc", "", "0123456789abcdef0; rm"):
        with pytest.raises(ValueError):
            M.guest_marker_command(bad)


def test_guest_command_never_contains_marker_contiguously():
    cmd = M.guest_marker_command(MARK)
    assert MARK not in cmd
    assert MARK[:16] in cmd and MARK[16:] in cmd
    assert "mount -t tmpfs" in cmd


BUSYBOX = shutil.which("busybox")


@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
def test_guest_command_writes_marker_copies(tmp_path):
    """Run the command in busybox ash; a fake mounts table says the directory is a tmpfs."""
    d = tmp_path / "sevmark"
    mounts = tmp_path / "mounts"
    mounts.write_text(f"sevmark {d} tmpfs rw,relatime,size=8192k,mode=700 0 0\n")
    cmd = M.guest_marker_command(MARK, doublings=4, directory=str(d)).replace("/proc/mounts", str(mounts))
    assert "mount -t tmpfs" in cmd
    out = subprocess.run([BUSYBOX, "sh", "-c", cmd], capture_output=True, text=True, timeout=30).stdout
    assert M.parse_marker_ack(out) == 16 * (len(MARK) + 1)
    assert (d / "marker").read_text() == (MARK + "\n") * 16
    mounts.write_text("")  # not a tmpfs, and the mount is replaced by a failing command: no ack
    cmd2 = M.guest_marker_command(MARK, directory=str(d)).replace("/proc/mounts", str(mounts))
    cmd2 = cmd2.replace("mount -t tmpfs", "false")
    out = subprocess.run([BUSYBOX, "sh", "-c", cmd2], capture_output=True, text=True, timeout=30).stdout
    assert M.parse_marker_ack(out) is None and "SEVMARK err=" in out
