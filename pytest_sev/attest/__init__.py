"""The guest owner's side of an attested SEV / SEV-ES launch, offline.

Why a separate package: a launch is only *proven* to be SEV-ES when the
measurement the PSP firmware returns matches what the owner expected for the
exact firmware, vCPUs and kernel the harness launched, keyed with a TIK only
the owner and the firmware know. Everything here is pure computation over
bytes (plus a few small I/O helpers kept in their own modules), so it is
tested against known-answer vectors without SEV hardware.

Modules, one concern each:

- :mod:`.measure`: expected launch digests (sev-snp-measure as a library)
- :mod:`.sevcert`, :mod:`.cacert`, :mod:`.sigverify`: AMD's certificate formats
- :mod:`.chain`, :mod:`.amdroots`: platform chain verification
- :mod:`.kdf`, :mod:`.session`, :mod:`.session_files`: LAUNCH_START session
- :mod:`.launch_verify`: ``query-sev-launch-measure`` check and verdict
- :mod:`.report`: ``query-sev-attestation-report`` parsing and signature
- :mod:`.secret`: LAUNCH_SECRET packet for ``sev-inject-launch-secret``
- the ``measure`` command lives with the other front ends, :mod:`pytest_sev.cli.measure`
"""
