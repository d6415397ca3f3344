"""``python -m pytest_sev COMMAND`` front ends: argument parsing and printing
only; the work is done by the library layers they call.

- :mod:`.provision` fetch the default guest kernel (setup does this)
- :mod:`.host`      host readiness report, like ``sevctl ok``
- :mod:`.launch`    launch-qemu.sh options, interactive serial console
- :mod:`.build`     build.sh equivalent
"""
