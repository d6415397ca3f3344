"""Build QEMU, OVMF and an SEV-ES kernel from pinned sources (build.sh parity).

AMD's ``build.sh`` pins each component in a ``stable-commits`` file, applies
local patch directories after a clean checkout and runs a fixed recipe.  This
package does the same, but every build is a content-addressed cache entry
(key: source, resolved commit, recipe version, config inputs, patch bytes), so
test sessions and ``python -m pytest_sev build`` share results and a second
run is a lookup.

One concern per module:

- :mod:`.sources`   the TOML sources file (``stable-commits`` equivalent)
- :mod:`.fetch`     git mirrors, ref resolution, clean checkouts, tarballs
- :mod:`.patches`   patch directories: order, digest, ``patch -p1``
- :mod:`.steps`     running argv steps with one full log, failing by step name
- :mod:`.kconfig`   base configs and the SEV-ES ``scripts/config`` edits
- :mod:`.packaging` os-release -> ``bindeb-pkg`` or ``binrpm-pkg``
- :mod:`.recipes`   the qemu / ovmf / kernel recipes
- :mod:`.manifest`  the per-build manifest and the session's list of them
- :mod:`.engine`    source + recipe -> cached build
- :mod:`.components` ``system`` / ``prefix:PATH`` / ``build`` resolution
- :mod:`.plugin`    pytest options and the ``components`` fixture
- :mod:`.cli`       ``python -m pytest_sev build``
"""

from pytest_sev.build.errors import BuildError, SourcesError

__all__ = ["BuildError", "SourcesError"]
