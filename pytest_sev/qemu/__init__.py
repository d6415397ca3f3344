"""QEMU itself: the binary, the accelerator, the firmware files, the argv
renderer, the one launcher and the QMP client.

- :mod:`.binary`   find QEMU and read its version
- :mod:`.accel`    KVM only where it can really run a guest, else TCG
- :mod:`.firmware` OVMF CODE/VARS, the per-guest variable store
- :mod:`.argv`     a GuestSpec as argv (harness shape, launch-qemu.sh shape)
- :mod:`.process`  the one place QEMU processes are started and stopped
- :mod:`.qmp`      QMP with a transcript
"""
