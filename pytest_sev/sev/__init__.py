"""SEV / SEV-ES activation witnesses and launch-qemu.sh parity: the pure core.

Why a separate package: proving that a guest really runs encrypted needs
several *independent* witnesses (the guest kernel's log line, the SEV_STATUS
MSR read inside the guest, QEMU's ``query-sev`` on the host, and the host's
view of guest memory). Each witness here is a pure function over text,
numbers or a dump file, so every rule is tested on recorded output without
SEV hardware, and the I/O (serial console, QMP, pmemsave) stays in the guest
driver.

Modules, one concern each:

- :mod:`.policy`     guest policy bits, AMD's script defaults, contradictions
- :mod:`.guestlog`   guest kernel log lines of every kernel era
- :mod:`.msr`        SEV_STATUS MSR bits, the in-guest read command and its parsers
- :mod:`.qmp_sev`    ``query-sev``, ``query-sev-launch-measure``, capability errors
- :mod:`.memview`    host memory view: marker search and page entropy of a dump
- :mod:`.launchsh`   what AMD's ``launch-qemu.sh`` (sev-es branch) generates

A witness that cannot be read answers "unknown" (``None``), never a pass.
"""
