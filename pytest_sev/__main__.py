"""``python -m pytest_sev COMMAND``: the harness's tools outside pytest.

Commands:
  provision   fetch the default guest's kernel into the cache (setup does this)
  host        host readiness report, like ``sevctl ok`` (exit 1 when not ready)
  launch      launch-qemu.sh options, interactive serial console
  build       build.sh equivalent: build qemu, ovmf, kernel from pinned sources
  measure     expected SEV / SEV-ES / SEV-SNP launch digest of what would be launched
  merge       several runners' Allure results (and JUnit XML) into one report's input
  capture     record this runner (host inputs, guest witnesses) as a fixture bundle
  snp-report  verify an SEV-SNP attestation report offline (signature, VCEK chain,
              nonce, measurement, policy, VMPL, TCB)
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "provision": "pytest_sev.cli.provision",
    "host": "pytest_sev.cli.host",
    "launch": "pytest_sev.cli.launch",
    "build": "pytest_sev.cli.build",
    "measure": "pytest_sev.cli.measure",
    "merge": "pytest_sev.cli.merge",
    "capture": "pytest_sev.cli.capture",
    "snp-report": "pytest_sev.cli.snp_report",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        print(f"python -m pytest_sev: unknown command {argv[0]!r} (commands: {', '.join(COMMANDS)}; "
              "--help for what each does)", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    try:
        module = importlib.import_module(COMMANDS[argv[0]])
    except ModuleNotFoundError as exc:
        print(f"pytest_sev {argv[0]}: not available in this build ({exc.name})", file=sys.stderr)
        return 2
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
