"""Guests: what to boot (:mod:`.spec`), how a run's specs are assembled
(:mod:`.specs`), the running guest (:mod:`.guest`) and the protocol the
layers above bind to (:mod:`.protocol`).

Kept free of imports on purpose: :mod:`pytest_sev.qemu.argv` renders
:mod:`.spec`, and :mod:`.guest` uses :mod:`pytest_sev.qemu`; importing them
here would tie the two packages in a circle.
"""
