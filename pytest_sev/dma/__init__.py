"""The pure core of the DMA-under-load suite (SWIOTLB bounce pool sizes).

Everything here is text in, values out: no QEMU, no sleeping, no pytest.
The suite boots a guest per pool size, runs the guest commands built by
:mod:`.load`, samples progress into :mod:`.stall`, parses the kernel log with
:mod:`.kmsg`, decides an outcome with :mod:`.classify`, compares it with the
table in ``fixtures/dma_expectations.toml`` via :mod:`.expectations`, and
writes a JSON + PNG summary with :mod:`.summary`. Keeping these pieces pure is
what lets every parser be tested on recorded guest output without a machine.

Modules:
    sizes         pool sizes (slabs, ``1M``..., ``auto``) and the ``swiotlb=`` argument
    kmsg          guest kernel messages: pool size, exhaustion, panics, hangs, I/O errors
    debugfs       ``/sys/kernel/debug/swiotlb/*`` counters
    fio           fio argument builder and fio 3.x JSON parser
    ddload        the busybox ``dd`` + ``md5sum`` fallback load
    load          the guest command strings the suite runs, and their parsers
    stall         progress samples -> running / finished / stalled
    classify      evidence -> clean / pressure / unproven / stall / hung / io-error / corruption /
                  panic; a stall only for a live guest with SWIOTLB evidence, GuestDied for a dead one
    expectations  the expectation table and the rules that always hold
    summary       ``dma-summary.json`` and ``dma-summary.png``
"""
