"""Files guests boot from: the provisioned distro kernel, its modules, the
busybox initramfs, and the GRUB disk image.  Everything is built into the
content-addressed cache (:mod:`pytest_sev.cache`); nothing here decides how
a guest is launched (that is :mod:`pytest_sev.guest.specs`).

- :mod:`.provision`      ``apt-get download`` + ``dpkg -x`` of the kernel package
- :mod:`.default_kernel` the default guest's kernel and command line
- :mod:`.modules`        ``modules.dep`` load order
- :mod:`.initramfs`      busybox (+ fio) initramfs
- :mod:`.diskimage`      GPT + ESP + GRUB image, qcow2 overlays
- :mod:`.bzimage`        the kernel release from a bzImage header
"""
