"""pytest_sev.dma.load / .fio / .ddload: guest commands and their parsers.

The ``loop-*`` recordings are the exact command strings of this module run by
busybox 1.35 ash against a loop device (fio 3.33); ``guest61-*`` are real
Debian 6.1 TCG guest consoles (fixtures/recorded/dma/README.md).
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from recorded_console import section as console_section

from pytest_sev.dma import load
from pytest_sev.dma.ddload import DdSpec, parse_dd
from pytest_sev.dma.fio import EILSEQ, FioSpec, fio_args, parse_fio

REC = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "dma"


def rec(name: str) -> str:
    return (REC / name).read_text()



# --- command strings -----------------------------------------------------------

@pytest.mark.parametrize("tool", ["fio", "dd"])
def test_start_command_shape(tool):
    c = load.start_command("/dev/vda", load.LoadSpec(tool=tool))
    assert "\n" not in c and len(c) <= load.MAX_COMMAND_CHARS
    assert c.startswith("dmesg -n 1;D=/tmp/dmaload;rm -rf $D;")
    assert c.endswith("</dev/null >/dev/null 2>&1 & )")
    assert "/sys/block/vda/stat" in c and "echo $r >$D/rc" in c or "echo 0 >$D/rc" in c
    assert c.count("(") == c.count(")")


def test_start_command_options():
    c = load.start_command("/dev/sda", load.LoadSpec(tool="dd", quiet_console=False, mount_debugfs=False))
    assert "dmesg -n" not in c and "debugfs" not in c and "of=/dev/sda" in c
    with pytest.raises(ValueError):
        load.start_command("/dev/vda; reboot", load.LoadSpec(tool="dd"))
    with pytest.raises(ValueError):
        load.start_command("/dev/vda", load.LoadSpec(tool="auto"))  # type: ignore[arg-type]


def test_fio_args_meet_the_brief():
    a = fio_args("/dev/vda", "/tmp/x.json")
    s = " ".join(a)
    for want in ("--direct=1", "--ioengine=libaio", "--numjobs=4", "--iodepth=2", "--rw=randwrite",
                 "--verify=crc32c", "--do_verify=1", "--output-format=json", "--output=/tmp/x.json",
                 "--bssplit=4k/25:64k/25:1m/25:4m/25", "--size=32M", "--offset_increment=32M", "--runtime="):
        assert want in s
    assert FioSpec().max_inflight_bytes == 32 << 20  # half the 64M default pool
    assert "--status-interval=1" in fio_args("/dev/vda", "o", spec=FioSpec(status_interval_s=1))
    for bad in (dict(numjobs=2), dict(iodepth=1), dict(bssplit="4k/50:1m/50")):
        with pytest.raises(ValueError):
            FioSpec(**bad)


def test_fio_load_writes_then_verifies():
    """Write-only with a verify pass: every read fio reports is a verify read (issue 21)."""
    s = " ".join(fio_args("/dev/vda", "o"))
    assert "--rw=randwrite" in s and "randrw" not in s and "rwmixread" not in s
    assert "--verify=crc32c" in s and "--do_verify=1" in s


def test_fio_verify_pass_proven_by_its_reads():
    r = load.parse_result(rec("loop-fio-write-verify.result.txt"))
    assert r.finished and r.rc == 0 and r.fio.options["rw"] == "randwrite"
    assert r.fio.read_bytes == r.fio.write_bytes == 128 << 20
    assert r.fio.verify_problem() is None and r.unverified() is None


def test_fio_verify_pass_cut_short_by_runtime_is_caught():
    """Captured: fio exits 0, says nothing, and skipped its verify pass."""
    cut = parse_fio(rec("fio-randwrite-runtime-cut.json"))
    assert cut.job_errors == [] and cut.verify_failures == 0 and cut.read_bytes == 0
    assert cut.verify_problem() == ("fio's verify pass read back 0 of the 39182336 bytes written "
                                    "(cut short, e.g. by runtime=)")


def test_fio_reads_of_a_randrw_workload_prove_nothing():
    old = load.parse_result(rec("loop-fio-clean.result.txt")).fio
    assert old.read_bytes > 0 and old.options["rw"] == "randrw"
    assert old.verify_problem() == "fio ran rw=randrw: its reads are the workload's, they prove no verify pass"


@pytest.mark.parametrize("change, why", [
    ({"do_verify": "0"}, "fio ran without a verify pass (verify=crc32c, do_verify=0)"),
    ({"verify": "none"}, "fio ran without a verify pass (verify=none, do_verify=1)"),
    ({"verify": "0"}, "fio ran without a verify pass (verify=0, do_verify=1)"),
    ({"verify": ""}, "fio ran without a verify pass (verify=, do_verify=1)"),
    ({"rw": "write"}, None),
    ({"rw": "trimwrite"}, None),
    ({"rw": "randread"}, "fio ran rw=randread: its reads are the workload's, they prove no verify pass"),
], ids=lambda v: str(v))
def test_fio_verify_options(change, why):
    fr = parse_fio(load.split_sections(rec("loop-fio-write-verify.result.txt"))["fio.json"])
    fr.options.update(change)
    assert fr.verify_problem() == why


def test_fio_verify_defaults_and_counts():
    fr = parse_fio(load.split_sections(rec("loop-fio-write-verify.result.txt"))["fio.json"])
    for name in ("verify", "rw"):
        opts = dict(fr.options)
        del opts[name]
        fr.options = opts
        assert fr.verify_problem() is not None, name  # fio's defaults: verify=none, rw=read
        fr = parse_fio(load.split_sections(rec("loop-fio-write-verify.result.txt"))["fio.json"])
    del fr.options["do_verify"]
    assert fr.verify_problem() is None  # do_verify defaults to 1
    fr.read_bytes = fr.write_bytes - 1
    assert "read back 134217727 of the 134217728 bytes" in fr.verify_problem()
    fr.read_bytes, fr.write_bytes = 0, 0
    assert fr.verify_problem() == "fio wrote no bytes"


def test_fio_global_options_count_too():
    js = load.split_sections(rec("loop-fio-write-verify.result.txt"))["fio.json"]
    report = json.loads(js[js.index("{"):])
    report["global options"] = {"verify": "crc32c", "rw": "read"}
    del report["jobs"][0]["job options"]["verify"]
    fr = parse_fio(json.dumps(report))
    assert fr.options["verify"] == "crc32c" and fr.options["rw"] == "randwrite"  # the job's own wins
    assert fr.verify_problem() is None


def test_fio_engine_fallback_is_in_the_command():
    c = load.start_command("/dev/vda", load.LoadSpec(tool="fio"))
    assert "E=psync;fio --enghelp=libaio >/dev/null 2>&1&&E=libaio;" in c and "--ioengine=$E" in c


def test_dd_spec():
    s = DdSpec()
    assert s.workers == 8 and s.max_inflight_bytes == 32 << 20 and s.disk_bytes == 64 << 20
    for bad in (dict(workers=1), dict(region_mib=6), dict(passes=0)):
        with pytest.raises(ValueError):
            DdSpec(**bad)


def test_probe():
    assert load.parse_probe("~ # " + load.probe_command() + "\nDMATOOL dd\n~ # ") == "dd"
    assert load.parse_probe("DMATOOL fio\r\n") == "fio"
    with pytest.raises(ValueError):
        load.parse_probe(load.probe_command())  # the echoed command alone is not an answer


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox not installed")
@pytest.mark.parametrize("tool", ["fio", "dd"])
def test_commands_parse_in_busybox_ash(tool):
    for c in (load.start_command("/dev/vda", load.LoadSpec(tool=tool)), load.progress_command("/dev/vda"),
              load.result_command(), load.probe_command()):
        r = subprocess.run(["busybox", "sh", "-n", "-c", c], capture_output=True, text=True)
        assert r.returncode == 0, (c, r.stderr)


# --- progress ------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("busybox") is None or not Path("/proc/uptime").exists(),
                    reason="busybox or /proc not available")
def test_progress_command_runs_in_busybox(tmp_path):
    """The exact line, run by busybox ash and awk (the guest's): every file in its field,
    missing ones empty, and the pool-full lines counted from dmesg minus the start's count."""
    dev = next((f"/dev/{d.name}" for d in sorted(Path("/sys/block").iterdir()) if (d / "stat").exists()), None)
    if dev is None:
        pytest.skip("no block device with a stat file on this host")
    work = tmp_path / "dmaload"
    work.mkdir()
    (work / "t0").write_text("12.50 3.00\n")
    (work / "full0").write_text("2\n")
    kernel_log = tmp_path / "dmesg.txt"  # 5 pool-full lines among others (busybox runs its own dmesg applet)
    kernel_log.write_text("[ 1.0] virtio_blk virtio1: swiotlb buffer is full (sz: 262144 bytes)\n[ 1.1] other\n" * 5)

    def run(cmd: str) -> str:
        return subprocess.run(["busybox", "sh", "-c", cmd], capture_output=True, text=True, check=True).stdout

    counted_cmd = load.progress_command(dev, str(work), count_pool_full=True)
    assert counted_cmd.startswith("dmesg 2>/dev/null|")
    counted = run(counted_cmd.replace("dmesg 2>/dev/null|", f"cat {kernel_log}|", 1))
    plain = run(load.progress_command(dev, str(work), count_pool_full=False))
    p = load.parse_progress(counted)
    assert p.pool_full_lines == 3 and p.started and not p.finished and p.rc is None
    assert p.stat.ios >= 0 and p.uptime_s > 0
    assert load.parse_progress(plain).pool_full_lines is None and plain.count("|") == counted.count("|") - 1
    (work / "rc").write_text("0\n")
    done = run(load.progress_command(dev, str(work), count_pool_full=False))
    assert load.parse_progress(done).finished and load.parse_progress(done).rc == 0


def test_progress_command_asks_dmesg_only_for_the_count():
    counted, plain = (load.progress_command("/dev/vda", count_pool_full=c) for c in (True, False))
    assert counted.startswith("dmesg 2>/dev/null|awk ") and "full0" in counted
    assert "dmesg" not in plain and "full0" not in plain and plain.endswith("</dev/null")
    with pytest.raises(ValueError, match="unsafe work directory"):
        load.progress_command("/dev/vda", "/tmp/x;rm -rf /")
    with pytest.raises(ValueError):
        load.progress_command("/dev/vda;reboot")


def test_parse_progress_recorded_guest():
    text = rec("guest61-virtio-blk-8M.console.txt")
    lines = [ln for ln in text.splitlines() if ln.startswith("DMAPROG|")]
    first, last = load.parse_progress(lines[0]), load.parse_progress(lines[-1])
    assert not first.started and not first.finished and first.rc is None
    assert last.finished and last.rc == 0 and last.started
    assert last.sectors > first.sectors
    assert last.stat.write_sectors == 524288  # 8 workers x 8 MiB x 4 passes / 512
    assert last.swiotlb_used == 0


def test_parse_progress_takes_last_and_ignores_echo():
    cmd = load.progress_command("/dev/vda")
    one = "DMAPROG|10.50 3.00|  1 0 8 5 2 0 16 4 3 9 9 0 0 0 0|7|||END"
    two = "DMAPROG|12.00 3.10|  9 0 80 5 2 0 16 4 0 9 9 0 0 0 0||9.9 1.0|1|END"
    p = load.parse_progress(f"~ # {cmd}\n{one}\n~ # {cmd}\r\n{two}\r\n")
    assert (p.uptime_s, p.sectors, p.in_flight, p.swiotlb_used, p.started, p.finished, p.rc) == (
        12.0, 96, 0, None, True, True, 1)
    assert load.parse_progress(one).in_flight == 3 and load.parse_progress(one).swiotlb_used == 7
    with pytest.raises(ValueError):
        load.parse_progress(cmd)
    with pytest.raises(ValueError):
        load.parse_progress("DMAPROG|1.0 1.0|1 2 3|||||END")  # too few stat fields


def test_progress_sample():
    p = load.parse_progress("DMAPROG|5.0 1.0|1 0 8 5 0 0 0 0 2 4 6||1.0 1.0||END")
    s = p.sample(100.0)
    assert (s.t, s.sectors, s.in_flight, s.finished, s.started) == (100.0, 8, 2, False, True)


# --- results -------------------------------------------------------------------

def test_split_sections_stops_at_end_marker():
    text = "junk\n@@DMA rc\n0\n\n@@DMA t0\n1.0 2.0\n@@DMA-END\n@@DMA rc\n9\n"
    assert load.split_sections(text) == {"rc": "0\n", "t0": "1.0 2.0\n"}


def test_dd_clean_loop():
    r = load.parse_result(rec("loop-dd-clean.result.txt"))
    assert r.tool == "dd" and r.finished and r.rc == 0
    assert len(r.dd.passes) == 16 and not r.dd.mismatches and not r.dd.io_failures
    assert r.io_errors == 0 and r.verify_failures == 0
    assert r.mib_s > 0 and r.iops > 0 and r.duration_s > 0


def test_dd_tamper_is_corruption_not_io_error():
    r = load.parse_result(rec("loop-dd-tamper.result.txt"))
    assert r.verify_failures == 4 and r.io_errors == 0
    assert {p.worker for p in r.dd.mismatches} == {1}


def test_dd_enospc_is_io_error_not_corruption():
    r = load.parse_result(rec("loop-dd-enospc.result.txt"))
    assert r.io_errors == 8 and r.verify_failures == 0
    assert any("No space left on device" in ln for ln in r.error_lines)


def test_dd_guest_8m():
    text = rec("guest61-virtio-blk-8M.console.txt")
    r = load.parse_result(console_section(text, "RESULT"))
    assert r.tool == "dd" and r.finished and len(r.dd.passes) == 32
    assert r.verify_failures == 0 and r.io_errors == 0
    assert 0 < r.mib_s < 1000


def test_dd_guest_1m_stalled_result():
    r = load.parse_result(console_section(rec("guest61-virtio-blk-1M.console.txt"), "RESULT"))
    assert r.tool == "dd" and not r.finished and r.mib_s is None
    assert r.dd is not None and r.dd.passes == []


def test_fio_clean_loop():
    r = load.parse_result(rec("loop-fio-clean.result.txt"))
    assert r.tool == "fio" and r.finished and r.rc == 0
    assert r.fio.version == "fio-3.33" and r.fio.jobs == 1
    assert r.fio.read_bytes > 0 and r.fio.write_bytes > 0
    assert r.mib_s == pytest.approx(r.fio.bw_bytes / 2**20) and r.iops > 0
    assert r.verify_failures == 0 and r.io_errors == 0
    assert not any("multiple writers" in m for m in r.error_lines)


def test_fio_tamper_loop_is_verify_failure():
    r = load.parse_result(rec("loop-fio-tamper.result.txt"))
    assert r.rc == 1 and r.verify_failures >= 1 and r.io_errors == 0
    assert EILSEQ in r.fio.job_errors
    assert r.error_lines[0].startswith("verify: bad magic header")


def test_fio_verify_only_and_enospc():
    v = parse_fio(rec("fio-verify-only-corrupt.json"), rec("fio-verify-only-corrupt.err"))
    assert v.verify_failures == 1 and v.io_errors == 0
    e = parse_fio(rec("fio-devfull-enospc.json"), rec("fio-devfull-enospc.err"))
    assert e.job_errors == [28] and e.io_errors == 1 and e.verify_failures == 0
    assert e.io_error_lines[0].startswith("fio: io_u error on file /dev/full")


def test_fio_status_interval_takes_last_report():
    rep = rec("loop-fio-clean.result.txt")
    js = load.split_sections(rep)["fio.json"]
    body = js[js.index("{"):]
    early = re.sub(r'"io_bytes" : \d+', '"io_bytes" : 1', body)
    r = parse_fio(early + body)
    assert r.read_bytes > 1


def test_fio_garbled_json_is_parse_error_not_crash():
    rep = rec("loop-fio-clean.result.txt").replace('"jobs" : [', '"jobs" : [[[', 1)
    r = load.parse_result(rep)
    assert r.parse_error and r.fio is None and r.finished
    with pytest.raises(ValueError):
        parse_fio("fio: engine libaio not loadable\n")


def test_parse_dd_ignores_malformed():
    r = parse_dd("DDLOAD 0 0 0 0 abc def 4096\nDDLOAD 1 0 0  d41d8cd98f00b204e9800998ecf8427e x 64\n")
    assert r.passes == []
