"""QEMU's host-side view of SEV: ``query-sev``, launch measure, capability errors.

Why: the guest can only say what it believes; QEMU and the PSP firmware
say what was launched. ``query-sev`` must report ``enabled``, the policy the
firmware got (its ES bit decides SEV vs SEV-ES) and state ``running``; its
API version must match what the host firmware reported. The launch
measurement proves the firmware measured the guest. A failing
``query-sev-capabilities`` is turned into a reason a person can act on.

Replies are accepted in any of the forms the harness sees: the QMP wire
form ``{"return": {...}}`` / ``{"error": {"class", "desc"}}`` (``cmd_raw``),
the bare return dict (``cmd``), or for errors a ``str`` or an exception with
``error_class`` (qemu.qmp ``ExecuteError``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_sev.sev import policy as _policy

SEV_STATES = ("uninit", "launch-update", "launch-secret", "running", "send-update", "receive-update")
SEV_TYPES = ("sev", "sev-snp")
#: the kinds a query-sev reply is judged against
EXPECTS = ("sev", "sev-es", "sev-snp", "plain")
MEASURE_NOT_AVAILABLE = "SEV launch measurement is not available"
#: LAUNCH_MEASURE's blob (SEV API spec): the 32-byte HMAC, then the 16-byte mnonce
MAC_BYTES, MNONCE_BYTES = 32, 16
MEASUREMENT_BYTES = MAC_BYTES + MNONCE_BYTES


def split_reply(reply: Any) -> tuple[Mapping[str, Any] | None, str | None, str | None]:
    """``(return_dict, error_class, error_desc)`` from any accepted reply form."""
    if isinstance(reply, BaseException):
        cls = getattr(reply, "error_class", None)
        desc = getattr(reply, "error", None)
        desc = getattr(desc, "desc", None) if desc is not None else None
        return None, cls, desc or str(reply)
    if isinstance(reply, str):
        return None, None, reply
    if not isinstance(reply, Mapping):
        return None, None, f"unexpected reply type {type(reply).__name__}"
    if "error" in reply and isinstance(reply["error"], Mapping):
        err = reply["error"]
        return None, err.get("class"), err.get("desc")
    if "return" in reply:
        ret = reply["return"]
        if isinstance(ret, Mapping):
            return ret, None, None
        return None, None, f"unexpected return value {ret!r}"
    if "class" in reply and "desc" in reply:
        return None, reply.get("class"), reply.get("desc")
    return reply, None, None


def parse_api_version(text: str) -> tuple[int, int]:
    """``"1.55"`` (or ``"SEV API:1.55 build:21"``) -> ``(1, 55)``; minor is an integer."""
    m = re.search(r"(\d+)\.(\d+)", text or "")
    if not m:
        raise ValueError(f"no MAJOR.MINOR API version in {text!r}")
    return int(m.group(1)), int(m.group(2))


# --------------------------------------------------------------------------
# query-sev


@dataclass(frozen=True)
class SevQueryVerdict:
    """``query-sev`` judged against the expected mode; ``ok`` when no problems."""

    expect: str
    enabled: bool | None
    state: str | None
    policy: int | None
    es_bit: bool | None
    sev_type: str | None
    snp_policy: int | None
    api: tuple[int, int] | None
    build_id: int | None
    handle: int | None
    host_api: tuple[int, int] | None
    api_compared: bool
    problems: tuple[str, ...]
    expect_state: str = "running"
    #: the SNP policy the guest was launched with (an SNP launch only)
    launched_snp_policy: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        if self.enabled is None:
            return "query-sev: " + "; ".join(self.problems)
        pol = f"{self.policy:#x}" if self.policy is not None else "-"
        api = f"{self.api[0]}.{self.api[1]}" if self.api else "-"
        snp = f" snp-policy={self.snp_policy:#x}" if self.snp_policy is not None else ""
        s = (f"query-sev: enabled={self.enabled} state={self.state} policy={pol}{snp} "
             f"ES={self.es_bit} sev-type={self.sev_type or '-'} api={api} build={self.build_id}")
        return s + (" PROBLEMS: " + "; ".join(self.problems) if self.problems else "")


def _int(ret: Mapping[str, Any], key: str, problems: list[str]) -> int | None:
    if key not in ret:
        return None
    v = ret[key]
    if isinstance(v, bool) or not isinstance(v, int):
        problems.append(f"'{key}' is not an integer: {v!r}")
        return None
    return v


def evaluate_query_sev(
    reply: Any,
    expect: str = "sev-es",
    host_api: str | None = None,
    expect_state: str = "running",
    snp_policy: int | None = None,
) -> SevQueryVerdict:
    """Judge a ``query-sev`` reply.

    ``expect``: ``"sev-snp"``, ``"sev-es"``, ``"sev"`` or ``"plain"`` (a control
    guest must answer ``enabled: false``).  ``snp_policy``: for ``sev-snp``, the
    policy the guest was launched with (QEMU >= 9.1 answers ``sev-type:
    sev-snp`` and ``snp-policy`` instead of ``policy``). ``host_api``: the host firmware's API string
    (``"1.55"``); ``None``/``""``/``"unknown"`` means not compared.
    ``expect_state``: ``running`` for a launched guest, ``launch-secret`` for
    one started with ``-S``.
    """
    if expect not in EXPECTS:
        raise ValueError(f"expect must be sev, sev-es, sev-snp or plain, not {expect!r}")
    if (expect == "sev-snp") != (snp_policy is not None):
        raise ValueError("the launched snp_policy is given for an sev-snp guest, and only for one")
    ret, ecls, edesc = split_reply(reply)
    problems: list[str] = []
    host = None
    if host_api and host_api.strip().lower() not in ("unknown", "none", "-"):
        host = parse_api_version(host_api)
    if ret is None:
        problems.append(f"query-sev failed: {ecls or 'error'}: {edesc}")
        return SevQueryVerdict(expect, None, None, None, None, None, None, None, None, None,
                               host, False, tuple(problems), expect_state, snp_policy)

    enabled = ret.get("enabled")
    if not isinstance(enabled, bool):
        problems.append(f"'enabled' missing or not a boolean: {enabled!r}")
        enabled = None
    state = ret.get("state")
    if state is not None and state not in SEV_STATES:
        problems.append(f"unknown state {state!r}")
    sev_type = ret.get("sev-type")
    if sev_type is not None and sev_type not in SEV_TYPES:
        problems.append(f"unknown sev-type {sev_type!r}")
    pol = _int(ret, "policy", problems)
    snp_pol = _int(ret, "snp-policy", problems)
    major = _int(ret, "api-major", problems)
    minor = _int(ret, "api-minor", problems)
    build = _int(ret, "build-id", problems)
    handle = _int(ret, "handle", problems)
    api = (major, minor) if major is not None and minor is not None else None
    es_bit = bool(pol & _policy.ES) if pol is not None else None

    api_compared = False
    if expect == "plain":
        if enabled:
            problems.append("SEV is enabled on a guest expected to be plain")
    else:
        if enabled is False:
            problems.append(f"SEV is not enabled (expected {expect})")
        if state is None:
            problems.append("reply lacks 'state'")
        elif state != expect_state:
            problems.append(f"state is {state!r}, expected {expect_state!r}")
        if expect == "sev-snp":
            problems += snp_problems(sev_type, snp_pol, snp_policy)
        else:
            problems += sev_policy_problems(sev_type, pol, enabled, expect)
        if api is None:
            problems.append("reply lacks api-major/api-minor")
        elif host is not None:
            api_compared = True
            if api != host:
                problems.append(
                    f"guest firmware API {api[0]}.{api[1]} differs from host firmware {host[0]}.{host[1]}"
                )
    return SevQueryVerdict(expect, enabled, state, pol, es_bit, sev_type, snp_pol, api, build,
                           handle, host, api_compared, tuple(problems), expect_state, snp_policy)


def sev_policy_problems(sev_type: str | None, pol: int | None, enabled: bool | None, expect: str) -> list[str]:
    """What an SEV or SEV-ES guest's reply gets wrong about its type and policy."""
    problems: list[str] = []
    if sev_type == "sev-snp":
        problems.append(f"sev-type is sev-snp, expected sev ({expect})")
    if pol is None:
        if sev_type != "sev-snp":
            problems.append("reply lacks 'policy'")
    elif enabled:
        try:
            _policy.check_policy(pol, expect)  # type: ignore[arg-type]
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def snp_problems(sev_type: str | None, snp_pol: int | None, launched: int | None) -> list[str]:
    """What an SEV-SNP guest's reply gets wrong: its type, and its policy against the launched one."""
    problems: list[str] = []
    if sev_type != "sev-snp":
        problems.append(f"sev-type is {sev_type!r}, expected 'sev-snp'")
    if snp_pol is None:
        problems.append("reply lacks 'snp-policy'")
    elif snp_pol != launched:
        problems.append(f"snp-policy {snp_pol:#x} differs from the launched {launched:#x}")
    return problems


# --------------------------------------------------------------------------
# query-sev as a witness: what the verdict proves, and no more


@dataclass(frozen=True)
class QuerySevAnswer:
    """``query-sev``'s answer as a witness: (encrypted, es) yes / no / None.

    ``reason`` says what decided it, or for an unknown answer why not.
    """

    encrypted: bool | None
    es: bool | None
    reason: str
    #: SEV-SNP per QEMU (None: not told, or not asked: only an SNP launch is judged on it)
    snp: bool | None = None

    @property
    def decisive(self) -> bool:
        return self.encrypted is not None


def _unknown(v: SevQueryVerdict, why: str) -> QuerySevAnswer:
    return QuerySevAnswer(None, None, f"unknown: {why} ({v.describe()})")


def answer_snp_query(v: SevQueryVerdict) -> QuerySevAnswer:
    """What an enabled SNP launch's judged reply proves (QEMU >= 9.1's words).

    ``sev-type: sev-snp`` with the launched ``snp-policy`` is the decisive yes;
    another ``snp-policy`` is a no (not the guest that was launched); ``sev-type:
    sev`` is a no for SNP (a sev-guest runs); no sev-type (QEMU < 9.1 has none,
    and cannot launch SNP) or no snp-policy is unknown, as is a wrong state or API."""
    if v.sev_type == "sev":
        return QuerySevAnswer(True, v.es_bit, f"QEMU runs a sev-guest, not the SNP guest launched ({v.describe()})",
                              snp=False)
    if v.sev_type != "sev-snp":
        return _unknown(v, f"sev-type is {v.sev_type!r}: QEMU does not say the guest is SNP")
    if v.snp_policy is None:
        return _unknown(v, "the reply has no snp-policy, so the launch cannot be told")
    if v.snp_policy != v.launched_snp_policy:
        return QuerySevAnswer(True, True, f"snp-policy {v.snp_policy:#x} is not the launched "
                              f"{v.launched_snp_policy:#x}: not the guest that was launched ({v.describe()})", snp=False)
    if v.problems:
        return _unknown(v, "; ".join(v.problems))
    return QuerySevAnswer(True, True, v.describe(), snp=True)


def answer_query_sev(v: SevQueryVerdict) -> QuerySevAnswer:
    """What a judged ``query-sev`` reply proves about (encrypted, SEV-ES).

    Decisive only when QEMU's own words decide: ``enabled: false`` is a no;
    for the plain control ``enabled: true`` is a yes (it disagrees); a policy
    whose ES bit contradicts the requested kind decides ES (a guest launched
    as SEV-ES whose policy lacks ES is a "no" for ES). Everything else that
    is listed as a problem leaves the answer unknown, naming it: no reply, no
    policy (SEV cannot be told from SEV-ES), a state other than the expected
    one, an sev-type other than ``sev`` (QEMU's type for SEV *and* SEV-ES
    guests), an API that differs from the host firmware's, a malformed field.
    An SNP launch is judged by :func:`answer_snp_query`.
    """
    if v.enabled is None:
        return _unknown(v, "no usable reply")
    if v.enabled is False:
        return QuerySevAnswer(False, False, f"QEMU says SEV is not enabled ({v.describe()})", snp=False)
    if v.expect == "plain":
        return QuerySevAnswer(True, v.es_bit, f"QEMU says SEV is enabled on the plain control ({v.describe()})")
    if v.expect == "sev-snp":
        return answer_snp_query(v)
    if v.sev_type not in (None, "sev"):
        return _unknown(v, f"sev-type is {v.sev_type!r}, not the sev-guest that was launched")
    if v.policy is None:
        return _unknown(v, "the reply has no policy, so SEV cannot be told from SEV-ES")
    # the policy is what QEMU gave LAUNCH_START: the firmware never turns a guest
    # into SEV-ES, nor drops ES from one launched with it, whatever the state now
    contradiction = _policy.es_mismatch(v.policy, v.expect)
    if contradiction is not None:
        return QuerySevAnswer(True, v.es_bit, f"policy {v.policy:#x} {contradiction} ({v.describe()})")
    if v.problems:
        return _unknown(v, "; ".join(v.problems))
    return QuerySevAnswer(True, v.es_bit, v.describe())


# --------------------------------------------------------------------------
# query-sev-launch-measure


@dataclass(frozen=True)
class LaunchMeasure:
    """A launch measurement reply.

    ``present``: valid base64 data of exactly 48 bytes (SEV/SEV-ES: the
    32-byte measurement MAC then the 16-byte mnonce). Any other size is not a
    launch measurement, so it is not present (``problem`` says the size):
    a blob of the wrong length proves nothing about encryption.
    ``not_available``: QEMU's documented "not available" error (the guest is
    past ``launch-secret`` or not an SEV guest).
    """

    present: bool
    length: int | None
    measurement: bytes | None
    mnonce: bytes | None
    not_available: bool
    problem: str | None

    def describe(self) -> str:
        if self.present:
            return f"launch measurement present ({self.length} bytes)"
        return f"no launch measurement: {self.problem}"


def evaluate_launch_measure(reply: Any) -> LaunchMeasure:
    """Judge a ``query-sev-launch-measure`` reply or error."""
    ret, ecls, edesc = split_reply(reply)
    if ret is None:
        na = bool(edesc and MEASURE_NOT_AVAILABLE in edesc)
        return LaunchMeasure(False, None, None, None, na, f"{ecls or 'error'}: {edesc}")
    data = ret.get("data")
    if not isinstance(data, str) or not data.strip():
        return LaunchMeasure(False, None, None, None, False, f"'data' missing or empty: {data!r}")
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        return LaunchMeasure(False, None, None, None, False, f"'data' is not valid base64: {exc}")
    if len(raw) != MEASUREMENT_BYTES:
        return LaunchMeasure(False, len(raw), None, None, False,
                             f"'data' decodes to {len(raw)} bytes, not the {MEASUREMENT_BYTES} of a launch "
                             f"measurement ({MAC_BYTES}-byte MAC + {MNONCE_BYTES}-byte nonce)")
    return LaunchMeasure(True, MEASUREMENT_BYTES, raw[:MAC_BYTES], raw[MAC_BYTES:], False, None)


# --------------------------------------------------------------------------
# query-sev-capabilities errors


@dataclass(frozen=True)
class CapabilityError:
    """A ``query-sev-capabilities`` failure, classified."""

    code: str
    reason: str
    remedy: str
    error_class: str | None
    desc: str

    def describe(self) -> str:
        return f"{self.reason} ({self.desc}); {self.remedy}"


#: (code, regex on desc, reason, remedy) in match order (sev-reference.md section 5).
_CAP_RULES: tuple[tuple[str, str, str, str], ...] = (
    ("no-kvm", r"^KVM not enabled",
     "QEMU runs without KVM (TCG); SEV needs KVM",
     "run on an AMD host with /dev/kvm and -accel kvm"),
    ("kvm-sev-disabled", r"^SEV is not enabled in KVM",
     "kvm_amd has SEV disabled",
     "load kvm_amd with sev=1 (and sev_es=1), and enable SME/SEV in the BIOS; "
     "check /sys/module/kvm_amd/parameters/sev"),
    ("dev-sev", r"^(?:SEV: )?Failed to open /dev/sev",
     "/dev/sev cannot be opened",
     "make sure the ccp driver initialised the PSP (dmesg 'SEV API'), /dev/sev exists "
     "and the user can read and write it"),
    ("qemu-without-sev", r"^SEV is not available in this QEMU",
     "this QEMU was built without SEV support",
     "use a QEMU built for x86_64 with SEV (e.g. the AMD build recipe)"),
    ("sev-unavailable", r"^SEV feature is not available",
     "SEV is not available (QEMU 2.12-5.0 gives no detail)",
     "check KVM, kvm_amd sev=1 and /dev/sev, or use QEMU >= 5.1 for a precise error"),
)


def classify_capabilities_error(error: Any) -> CapabilityError:
    """Turn a ``query-sev-capabilities`` error into an actionable reason."""
    _, ecls, edesc = split_reply(error)
    desc = (edesc or "").strip()
    if ecls == "CommandNotFound":
        return CapabilityError("command-not-found", "QEMU has no query-sev-capabilities",
                               "use an x86_64 QEMU >= 2.12", ecls, desc)
    for code, rx, reason, remedy in _CAP_RULES:
        if re.search(rx, desc):
            return CapabilityError(code, reason, remedy, ecls, desc)
    return CapabilityError("unknown", "unrecognised query-sev-capabilities error",
                           "read the QEMU error text", ecls, desc)
