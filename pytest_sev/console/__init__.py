"""Guest consoles: implementations of :class:`pytest_sev.model.protocol.ConsoleLike`
(the protocol lives in layer 1, ``model/``, so every floor can name it).

- :mod:`.serial`   the serial console on a socketpair, read with pexpect
- :mod:`.framing`  commands framed by random markers, output base64 + MD5
- :mod:`.grub`     walking a GRUB menu over a console
"""
