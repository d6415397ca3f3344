"""Layer 5, the proofs: the I/O half that asks a running guest (or its QMP)
and hands text and bytes to the pure parsers in ``sev/``, ``dma/`` and
``attest/``.

Why a folder of its own: the parsers stay pure and testable on recorded
text, and the folder tree shows which code touches a live guest.
"""
