"""SEV_STATUS MSR: bit table, rdmsr and busybox-dd parsers, the guest command."""

import pathlib
import shutil
import subprocess

import pytest

from pytest_sev.sev import msr

REC = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "recorded" / "guest" / "msr"

EXPECTED_BITS = {0: "SEV", 1: "SEV-ES", 2: "SNP", 3: "vTOM", 4: "ReflectVC", 5: "RestrictedInjection",
                 6: "AlternateInjection", 7: "DebugSwap", 8: "PreventHostIBS", 9: "BTBIsolation",
                 10: "VmplSSS", 11: "SecureTSC", 12: "VMGExitParam", 14: "IBSVirt",
                 16: "VmsaRegProt", 17: "SMTProtection", 18: "SecureAVIC"}


def rec(name):
    return (REC / name).read_text()


@pytest.mark.parametrize("bit,name", sorted(EXPECTED_BITS.items()))
def test_each_bit_alone(bit, name):
    st = msr.decode_sev_status(1 << bit)
    assert st.flags == (name,)
    assert st.unknown_bits == ()
    assert st.sev == (bit == 0)
    assert st.sev_es == (bit == 1)
    assert st.snp == (bit == 2)


@pytest.mark.parametrize("bit", [13, 15, 19, 63])
def test_reserved_bits_reported_unknown(bit):
    st = msr.decode_sev_status(1 << bit)
    assert st.flags == ()
    assert st.unknown_bits == (bit,)


def test_decode_values():
    assert msr.decode_sev_status(3).flags == ("SEV", "SEV-ES")
    assert msr.decode_sev_status(0).flags == ()
    with pytest.raises(ValueError):
        msr.decode_sev_status(-1)
    with pytest.raises(ValueError):
        msr.decode_sev_status(1 << 64)


def test_kernel_status_tokens_point_at_named_bits():
    for tok, bit in msr.KERNEL_STATUS_TOKENS.items():
        assert bit in msr.SEV_STATUS_BITS, tok


# ---- rdmsr -a

def test_rdmsr_sev_es():
    w = msr.parse_rdmsr_output(rec("rdmsr-sev-es-4cpu.txt"), expected_cpus=4)
    assert (w.sev, w.sev_es, w.value) == (True, True, 3)
    assert w.per_cpu == {0: 3, 1: 3, 2: 3, 3: 3}


def test_rdmsr_sev_only():
    w = msr.parse_rdmsr_output(rec("rdmsr-sev-2cpu.txt"))
    assert (w.sev, w.sev_es) == (True, False)


def test_rdmsr_plain_is_known_false():
    w = msr.parse_rdmsr_output(rec("rdmsr-plain-2cpu.txt"))
    assert (w.sev, w.sev_es, w.value) == (False, False, 0)


def test_rdmsr_eio_is_unknown_not_pass():
    w = msr.parse_rdmsr_output(rec("rdmsr-eio.txt"))
    assert w.sev is None and w.sev_es is None
    assert w.per_cpu == {0: None}
    assert w.reasons[0].startswith("eio:")


def test_rdmsr_no_module_is_unknown():
    w = msr.parse_rdmsr_output(rec("rdmsr-no-msr-module.txt"))
    assert w.sev is None
    assert any(p.startswith("no-device:") for p in w.problems)


def test_rdmsr_cpus_must_agree():
    w = msr.parse_rdmsr_output(rec("rdmsr-disagree.txt"))
    assert w.sev is None and w.sev_es is None
    assert any("disagree" in p for p in w.problems)


def test_rdmsr_partial_then_error():
    w = msr.parse_rdmsr_output("3\nrdmsr: CPU 1 cannot read MSR 0xc0010131\n")
    assert w.per_cpu == {0: 3, 1: None}
    assert w.sev_es is None


def test_rdmsr_expected_cpu_count():
    assert msr.parse_rdmsr_output("3\n3\n", expected_cpus=4).sev_es is None
    assert msr.parse_rdmsr_output("3\n3\n", expected_cpus=2).sev_es is True


def test_rdmsr_ignores_echo_and_missing_tool():
    w = msr.parse_rdmsr_output("~ # rdmsr -a 0xc0010131\n3\n")
    assert w.sev_es is True
    w = msr.parse_rdmsr_output("sh: rdmsr: not found\n")
    assert w.sev is None and any(p.startswith("tool-missing") for p in w.problems)


def test_empty_output_is_unknown():
    assert msr.parse_rdmsr_output("").sev is None
    assert msr.parse_guest_read_output("").sev is None


# ---- busybox dd command output

def test_guest_read_recorded_plain_tcg():
    w = msr.parse_guest_read_output(rec("guest-read-plain-tcg-2cpu.txt"), expected_cpus=2)
    assert (w.sev, w.sev_es, w.value) == (False, False, 0)


def test_guest_read_sev_es_crlf():
    w = msr.parse_guest_read_output(rec("guest-read-sev-es-2cpu.txt"))
    assert (w.sev, w.sev_es) == (True, True)


def test_guest_read_snp():
    w = msr.parse_guest_read_output(rec("guest-read-snp-debugswap-1cpu.txt"))
    assert w.snp is True and w.status.flags == ("SEV", "SEV-ES", "SNP", "DebugSwap")


@pytest.mark.parametrize("name,code", [("guest-read-eio-2cpu.txt", "eio"),
                                       ("guest-read-no-msr-module.txt", "no-device"),
                                       ("guest-read-permission.txt", "permission")])
def test_guest_read_errors_unknown(name, code):
    w = msr.parse_guest_read_output(rec(name))
    assert w.sev is None and w.sev_es is None
    assert w.reasons and all(r.startswith(code + ":") for r in w.reasons.values())
    assert "unknown" in w.describe()


def test_guest_read_truncated():
    w = msr.parse_guest_read_output(rec("guest-read-truncated.txt"))
    assert w.sev is None
    assert any("incomplete" in p for p in w.problems)


def test_guest_read_no_cpu_dirs():
    w = msr.parse_guest_read_output("SEVMSR end cpus=0\n")
    assert w.sev is None and any(p.startswith("no-device") for p in w.problems)


def test_guest_read_bad_value_and_chatter():
    text = ("[ 12.3] random: crng init done\nSEVMSR cpu=0 val= 00000003\n"
            "SEVMSR cpu=1 val= 0000000000000003\nSEVMSR end cpus=2\n")
    w = msr.parse_guest_read_output(text)
    assert w.sev is None and w.reasons[0].startswith("unparsed")


def test_command_echo_is_not_a_result():
    cmd = msr.guest_read_command()
    w = msr.parse_guest_read_output(cmd + "\n")
    assert w.per_cpu == {} and w.sev is None


def test_command_shape():
    cmd = msr.guest_read_command()
    assert "iflag=skip_bytes" in cmd and f"skip={0xC0010131}" in cmd and "bs=8 count=1" in cmd
    assert cmd.startswith("modprobe msr")
    assert not msr.guest_read_command(load_module=False).startswith("modprobe")
    with pytest.raises(ValueError):
        msr.guest_read_command(cpu_root="/dev/cpu; rm -rf /")


BUSYBOX = shutil.which("busybox")


@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
def test_command_runs_in_busybox_ash_on_fake_msr_files(tmp_path):
    """The msr driver reads 8 bytes at offset = MSR number; sparse files stand in."""
    def fake_msr(cpu, value):
        d = tmp_path / str(cpu)
        d.mkdir(exist_ok=True)
        with open(d / "msr", "wb") as fh:  # sparse: only one block is real
            fh.truncate(msr.SEV_STATUS_MSR + 4096)
            fh.seek(msr.SEV_STATUS_MSR)
            fh.write(value.to_bytes(8, "little"))

    fake_msr(0, 0x3)
    fake_msr(1, 0x8000000000050087)
    (tmp_path / "2").mkdir()  # a CPU without msr device
    cmd = msr.guest_read_command(load_module=False, cpu_root=str(tmp_path))
    out = subprocess.run([BUSYBOX, "sh", "-c", cmd], capture_output=True, text=True, timeout=30).stdout
    w = msr.parse_guest_read_output(out)
    assert w.per_cpu == {0: 3, 1: 0x8000000000050087, 2: None}
    assert w.reasons[2].startswith("no-device")
    assert w.sev is None  # cpu2 unknown, and the values disagree
    fake_msr(1, 0x3)
    (tmp_path / "2").rmdir()
    out = subprocess.run([BUSYBOX, "sh", "-c", cmd], capture_output=True, text=True, timeout=30).stdout
    w = msr.parse_guest_read_output(out, expected_cpus=2)
    assert (w.sev, w.sev_es) == (True, True)
