"""The libvirt launcher (``--launcher=libvirt``): a guest spec as a transient
libvirt domain (:mod:`.domain_xml`, pure), the daemon and connection
(:mod:`.connection`), the running guest behind the same ``GuestLike``
interface as the QEMU launcher's (:mod:`.guest`), and the facts compared
with launch-qemu.sh's argv (:mod:`.parity`). Layer 4 (guests): libvirt-python
is imported lazily, only when a libvirt guest is asked for."""
