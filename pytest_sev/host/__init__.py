"""Host readiness for SEV and SEV-ES: probe the host, judge it, decide.

``probe_host()`` returns a :class:`HostReport` of :class:`Check` rows (always
the checks named in ``CHECK_NAMES``, in that order); ``decide()`` applies the
run mode (auto / sev-es / sev / off) to it for a test that needs SEV or SEV-ES.

Modules, one concern each: ``runner`` (commands), ``evidence`` (every read of
the machine), ``parse_*`` (pure parsers), ``checks_*`` (evidence -> checks),
``probe`` (the report), ``decide`` (the mode table), ``recorded`` (recorded
hosts for tests), ``qmp_probe`` (QEMU's own SEV answer), ``cli``.
"""

from pytest_sev.host.commands import Runner, SubprocessRunner
from pytest_sev.host.decide import Decision, check_outcome, decide
from pytest_sev.host.probe import CHECK_NAMES, build_report, probe_host
from pytest_sev.host.report import Check, HostReport

__all__ = [
    "CHECK_NAMES", "Check", "Decision", "HostReport", "Runner", "SubprocessRunner",
    "build_report", "check_outcome", "decide", "probe_host",
]
