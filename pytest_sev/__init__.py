"""pytest-sev: a pytest plugin that boots AMD SEV-ES guests under QEMU and
proves, with independent witnesses, that SEV-ES and SWIOTLB DMA really work.

The plugin module is :mod:`pytest_sev.plugin`; the library pieces (guest
control, host probing, parsers) live in their own modules so they can be used
and tested without pytest running a guest.
"""

__version__ = "0.1.0"
