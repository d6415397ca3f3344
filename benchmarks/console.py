"""The harness's console against a bare pexpect + serial baseline, same run.

Two numbers, each for the harness (:class:`~pytest_sev.guest.guest.Guest`:
framed commands on a socketpair console, output through a file, base64 and
an MD5, panic and dead-shell watch) and for a bare baseline (one
``pexpect.spawn`` of the same QEMU with ``-serial stdio``, a quiet shell, a
command followed by ``echo`` of a marker the shell computes):

* round trip: ``true`` and back, median of ``--commands`` runs;
* bulk: 256 KiB of output (``--bulk-kib``), KB/s of payload; both sides
  carry it base64-encoded (a serial line is not 8-bit clean), so the bytes
  on the wire are the same and only the harness's framing differs.

Both shells run with the same tty settings: no echo, no prompt, and the
guest's serial line at 115200 baud (``stty -echo 115200``, what the
harness's sync does).  The speed matters to both sides alike: QEMU's 16550
raises the receive interrupt for a partly filled FIFO only after four
character times, 4.2 ms at the kernel's default 9600 baud, so at 9600 the
tail of every typed line waits for it and a round trip is ~5 ms on either
side.  The baseline never waits for it either, so the ratio is the
framing's cost, not a tty setting.

Guests boot once per side; measurements alternate between them so machine
noise hits both alike.  Prints every median and the ratios harness/bare
(also the median of the ratios of each alternating pair, which machine load
drifting during the run does not skew).  Under TCG a round trip is a few
ms and quantised by the guest's timer tick: expect run-to-run noise of
+-0.2 in the ratio on a shared machine.

    .venv/bin/python benchmarks/console.py [--commands 150] [--bulk 5] [--bulk-kib 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from boot import bare_argv  # noqa: E402  (the same argv as the boot benchmark's bare side)

from pytest_sev.guest.guest import Guest  # noqa: E402
from pytest_sev.guest.specs import default_guest_spec  # noqa: E402
from pytest_sev.qemu.accel import choose_accel  # noqa: E402
from pytest_sev.qemu.binary import resolve_qemu  # noqa: E402


class Bare:
    """QEMU on a pty (``-serial stdio``) driven by plain pexpect."""

    def __init__(self, spec, qemu: str, accel: str, scratch: str) -> None:
        argv = bare_argv(spec, qemu, accel, scratch)
        self.child = pexpect.spawn(argv[0], argv[1:], timeout=300, maxread=65536)
        self.child.delaybeforesend = None  # pexpect's default 50 ms pause before each send
        self.child.expect(spec.ready_pattern.encode())
        self.child.expect(rb"sev-guest# ")
        self.child.sendline("stty -echo 115200; PS1=''; PS2=''; echo R-$((6*7))")  # as the harness's sync
        self.child.expect(rb"R-42")

    def run(self, cmd: str) -> bytes:
        self.child.sendline(f"{cmd}; echo D-$((6*7))")
        self.child.expect(rb"D-42")
        return self.child.before

    def close(self) -> None:
        self.child.terminate(force=True)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=150)
    parser.add_argument("--bulk", type=int, default=5)
    parser.add_argument("--bulk-kib", type=int, default=256)
    args = parser.parse_args()
    qemu, accel = resolve_qemu(), choose_accel()
    spec = default_guest_spec(name="bench-console")
    size = args.bulk_kib * 1024
    bulk_cmd = f"head -c {size} /dev/zero | tr '\\0' x"
    with tempfile.TemporaryDirectory(prefix="sev-bench-") as scratch:
        bare = Bare(spec, qemu, accel.name, scratch)
        guest = Guest(spec, qemu=qemu, accel=accel)
        try:
            guest.start()
            for _ in range(5):  # warm both shells (page cache, busybox applets)
                bare.run("true")
                guest.run("true")
            out, _ = guest.run(bulk_cmd, timeout=300)
            assert len(out) == size, len(out)
            rt_bare, rt_harness = [], []
            for _ in range(args.commands):
                rt_bare.append(timed(bare.run, "true"))
                rt_harness.append(timed(guest.run, "true"))
            bulk_bare, bulk_harness = [], []
            for _ in range(args.bulk):
                bulk_bare.append(timed(bare.run, f"{bulk_cmd} | base64"))
                bulk_harness.append(timed(guest.run, bulk_cmd, 300))
        finally:
            guest.close()
            bare.close()
    mb, mh = statistics.median(rt_bare), statistics.median(rt_harness)
    kb, kh = size / statistics.median(bulk_bare) / 1000, size / statistics.median(bulk_harness) / 1000
    print(f"accel {accel.name}; {args.commands} round trips, {args.bulk} bulk runs of {args.bulk_kib} KiB")
    print(f"round trip `true`: bare {mb * 1000:.1f} ms, harness {mh * 1000:.1f} ms "
          f"(p90 bare {statistics.quantiles(rt_bare, n=10)[-1] * 1000:.1f}, "
          f"harness {statistics.quantiles(rt_harness, n=10)[-1] * 1000:.1f}); ratio harness/bare {mh / mb:.2f} "
          f"(median of paired ratios {statistics.median(h / b for h, b in zip(rt_harness, rt_bare, strict=True)):.2f})")
    print(f"bulk {args.bulk_kib} KiB: bare {kb:.0f} KB/s, harness {kh:.0f} KB/s; "
          f"ratio harness/bare {kh / kb:.2f} (throughput)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
