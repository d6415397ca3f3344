"""Guest consoles: the protocol the rest binds to, and its implementations.

- :mod:`.protocol` ``ConsoleLike``: what guests, witnesses and the DMA runner need
- :mod:`.serial`   the serial console on a socketpair, read with pexpect
- :mod:`.framing`  commands framed by random markers, output base64 + MD5
- :mod:`.grub`     walking a GRUB menu over a console
"""
