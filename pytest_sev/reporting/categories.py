"""Failure categories: which cause a red test in a nightly report had.

Each category names one cause a person acts on differently (fix the runner's
BIOS, look at the guest kernel, look at the SWIOTLB pool, fix the harness),
and matches the harness's *real* error texts, quoted in the comments below
with the module that produces them.

How the regexes are written, and why:

- They match the **first line** of the Allure status message only
  (``^[^\\n]*...``). allure-pytest's message is ``ExceptionType: text`` and
  harness errors carry the console tail and QEMU command line after the
  first line; a kernel command line with ``swiotlb=force`` in a boot-timeout
  tail must not make it a SWIOTLB failure.
- They work under all three regex semantics that read this file: Allure 3
  (JavaScript ``RegExp.test``, a search, ``.`` not matching newlines), the
  classic report (search with the ``s`` flag) and Allure 2 (Java
  ``String.matches``: the whole message must match). Hence the leading ``^``
  and the trailing ``[\\s\\S]*`` instead of flags, which the three disagree on.
- Allure 3 puts a result in the **first** category that matches, so the
  order below is the precedence: the most specific cause first, and
  "Harness error" (any broken test left) last. Failures matching nothing stay
  in Allure's default "Product errors".

``tests/test_report_categories.py`` checks every regex against messages the
real code produces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.sev import signatures as _signatures

FILENAME = "categories.json"
FAILED_OR_BROKEN = ("failed", "broken")


def first_line(*alternatives: str) -> str:
    """Regex: one of *alternatives* (regexes) somewhere on the first line."""
    return r"^[^\n]*(?:" + "|".join(alternatives) + r")[\s\S]*"


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    message_regex: str | None
    statuses: tuple[str, ...] = FAILED_OR_BROKEN

    def to_allure(self) -> dict:
        """The Allure 2 ``categories.json`` form (Allure 3 reads it as well)."""
        entry: dict = {"name": self.name, "description": self.description,
                       "matchedStatuses": list(self.statuses)}
        if self.message_regex is not None:
            entry["messageRegex"] = self.message_regex
        return entry

    def matches(self, status: str, message: str | None) -> bool:
        """Allure 3's test (a regex search), for checks without a report."""
        if status not in self.statuses:
            return False
        if self.message_regex is None:
            return True
        return message is not None and re.search(self.message_regex, message) is not None


def _signature_categories() -> tuple[Category, ...]:
    """One category per known field failure (sev/signatures.py): the message
    names it as ``SEV signature <code>: <title> (...); remedy: ...``."""
    sigs = (*_signatures.SIGNATURES, _signatures.LOG_WITHOUT_ES)
    return tuple(Category(f"SEV signature: {s.title}", f"{s.title}. Remedy: {s.remedy}. Source: {s.source}",
                          first_line(rf"SEV signature {re.escape(s.code)}:")) for s in sigs)


CATEGORIES: tuple[Category, ...] = (
    # sev/signatures.py Match.message(): "SEV signature init-0x13-smee-off: ... remedy: ..."
    # (first: a named field failure is more specific than any symptom below)
    *_signature_categories(),
    # host/decide.py: decide() "--sev-es but host not ready for sev-es: host check ..."
    # and check_outcome() "--sev-es needs it: host check sev_firmware failed: ..."
    Category("Host not ready for the mode",
             "The mode asked for SEV/SEV-ES and a host check it needs failed: the runner lost SEV(-ES) "
             "(BIOS reset, kernel update, firmware). The message names the check and its remedy.",
             first_line(r"but host not ready for", r"needs it: host check"), ("failed",)),
    # provision.py ProvisionError ("... failed (rc): ...", "... is not provisioned: run ..."),
    # initramfs.py InitramfsError, modules.py MissingModule, builds: BuildError / "build failed"
    Category("Build or provisioning failure",
             "QEMU/OVMF/kernel could not be built, or the guest kernel/initramfs could not be provisioned.",
             first_line(r"build failed", r"BuildError", r"ProvisionError", r"InitramfsError",
                        r"MissingModule", r"is not provisioned")),
    # guest.py run(): GuestUnusable "guest NAME is unusable: GuestTimeout during command 'sleep 100': ..."
    # (first: the earlier failure it quotes may name any other cause)
    Category("Guest left unusable by an earlier failure",
             "The test used a guest that an earlier command left unusable (it timed out and may still "
             "run, its shell died, QMP was lost); the message quotes that failure. The shared guest "
             "fixture replaces such a guest, so this points at a test reusing its own broken guest.",
             first_line(r"GuestUnusable", r"guest \S+ is unusable: ")),
    # guest.py _panicked(): GuestPanicked "guest kernel panicked during boot: Kernel panic - not syncing: ..."
    # serial.py _fail_panic(): "guest kernel panicked while waiting for command 'x' to finish: Kernel panic ..."
    # dma/classify.py: "panic: kernel panic: Kernel panic - not syncing: ..."
    Category("Guest kernel panic",
             "The guest kernel panicked (during boot, a command or DMA load); the message has the panic "
             "line and the oops head (RIP, Call Trace), the console log the rest.",
             first_line(r"[Kk]ernel panic", r"guest kernel panicked", r"GuestPanicked")),
    # serial.py _expect_guarded(): ShellDied "the guest shell died while waiting for command 'x' to finish: ..."
    Category("Guest shell died",
             "The guest's shell ended under a command (killed, OOM, exit): a fresh shell answered "
             "instead of the command's end marker. The guest was replaced for the next test.",
             first_line(r"ShellDied", r"guest shell died")),
    # serial.py / qmp.py: GuestFrozen "QEMU (pid N) is stopped (SIGSTOP or a job-control stop):
    # /proc state 'T': gave up waiting for command '...' to finish"
    Category("QEMU frozen (stopped)",
             "QEMU is alive but stopped (SIGSTOP, a job-control stop or a debugger), so neither its "
             "console nor its monitor can answer; found within seconds, not at the command's timeout. "
             "Something on the runner stopped it: look for a debugger or a job-control stop.",
             first_line(r"GuestFrozen", r"QEMU \(pid \d+\) is stopped")),
    # qmp.py execute(): QMPLost "QMP lost: no answer to 'query-status' (TimeoutError)"
    Category("QMP connection lost",
             "QEMU's monitor stopped answering or its connection broke (QEMU frozen, killed or "
             "crashed); the message has the last QMP command, the QEMU command line and the logs.",
             first_line(r"QMPLost", r"QMP lost")),
    # dma/classify.py: "corruption: fio verify failed 2 time(s): ...",
    # "corruption: 1 dd pass(es) read back wrong data (... md5 x != y)"
    Category("Data corruption",
             "Data read back through the bounce buffers differs from what was written.",
             first_line(r"corruption", r"verify failed", r"checksum mismatch", r"read back wrong data")),
    # console.py expect(): "timed out after 300s waiting for the guest to boot (/.../ on the console)",
    # "... waiting for the login prompt", "... the password prompt", "... the shell to answer after boot"
    Category("Guest boot timeout",
             "The guest did not reach its shell in --guest-timeout (wrong kernel, firmware hang, "
             "SEV-ES launch stuck, TCG too slow). See the console log attachment.",
             first_line(r"timed out after \S+ waiting for (?:the guest to boot|the login prompt|"
                        r"the password prompt|the shell to answer after boot)")),
    # guest.py start(): GuestLaunchError "QEMU's monitor did not answer: ..."
    # console.py expect(): GuestDied "QEMU exited while waiting for the guest to boot ..."
    # guest.py run(): GuestDied "QEMU exited before command 'x' (...)" (it died between commands)
    Category("QEMU exited or did not start",
             "QEMU refused the command line or died under the guest; see the qemu stderr attachment.",
             first_line(r"QEMU's monitor did not answer", r"QEMU exited (?:while waiting for|before command)",
                        r"GuestLaunchError", r"GuestDied")),
    # (before the SWIOTLB and QMP keywords: a hung command's text, on the first
    # line, may well mention swiotlb)
    # guest.py check(): "guest command 'x' exited 1"; console.py: "timed out after 60s waiting for
    # command '...' to finish"; GuestProtocolError "output of '...' failed its MD5 twice"
    Category("Guest command failed or hung",
             "A command in a booted guest failed, hung or answered garbled output.",
             first_line(r"pytest_sev\.errors\.Guest\w*", r"guest command ")),
    # dma/classify.py: "hung: ... no SWIOTLB evidence ...", "hung: QEMU's monitor does not answer ...":
    # a load that stopped without the pool shown exhausted, or a guest that stopped answering.
    # Before the SWIOTLB category: a hung reason may name the pool it could not show exhausted.
    Category("DMA load hung",
             "The DMA load stopped making progress without SWIOTLB evidence of an exhausted pool, or the "
             "guest (its shell, QMP or the VM itself) stopped answering: not the expected stall.",
             first_line(r"\bhung: ")),
    # dma/classify.py: "stall: no I/O completed for 60s ...", "pressure: ... 'swiotlb buffer is full'",
    # "io-error: ... I/O error ...", "io-error: kernel has no SWIOTLB pool (...)"
    Category("SWIOTLB stall, exhaustion or I/O error",
             "DMA through the SWIOTLB bounce pool stalled, ran out of slots or returned I/O errors.",
             first_line(r"swiotlb", r"SWIOTLB", r"\bstall", r"no I/O completed", r"I/O error",
                        r"io-error", r"buffer is full", r"blocked for more than")),
    # qmp.py execute(): qemu.qmp ExecuteError ("qemu.qmp.qmp_client.ExecuteError: ...")
    Category("QMP error",
             "QEMU's monitor refused or failed a command the harness sent (see the qmp transcript).",
             first_line(r"ExecuteError", r"QMP", r"qemu\.qmp")),
    # anything else broken: a Python error in a test, fixture or the plugin itself
    Category("Harness error",
             "A test or the harness raised an unexpected Python error (broken test): fix the code, "
             "not the machine.",
             None, ("broken",)),
)


def categorize(status: str, message: str | None,
               categories: tuple[Category, ...] = CATEGORIES) -> str | None:
    """Name of the first category matching (Allure 3's rule), or None."""
    for category in categories:
        if category.matches(status, message):
            return category.name
    return None


def categories_json(categories: tuple[Category, ...] = CATEGORIES) -> str:
    return json.dumps([c.to_allure() for c in categories], indent=2) + "\n"


def write_categories(results_dir: Path) -> Path:
    path = Path(results_dir) / FILENAME
    path.write_text(categories_json())
    return path
