"""Layer 4, guests: how a run's specs are assembled (:mod:`.specs`), the
running guest (:mod:`.guest`) and the host's guest budget (:mod:`.budget`).

What a guest *is* (the spec) and what the proofs need from one (the
``GuestLike`` protocol) live one floor down in :mod:`pytest_sev.model`, so
``qemu/`` can render a spec without importing the guests that use it.
"""
