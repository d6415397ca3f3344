"""Layer 1, the data every layer above shares: what a guest is (``spec``) and
what the proofs need from a running one (``protocol``).

Why a folder of its own: the renderer (``qemu/``), the host checks and the
proofs all read these; kept below them, no folder imports upward.
"""
