"""The name of the machine a run happened on, as reports show it.

Several runners (an EPYC Milan, a Rome, a developer laptop) publish into one
report; the runner name keeps their results apart (parent suite, a test
parameter, environment). A nightly sets ``SEV_RUNNER`` to a stable name,
because CI hostnames often change between runs and history is keyed on it.
"""

from __future__ import annotations

import os
import socket

ENV_VAR = "SEV_RUNNER"
#: the Allure label naming the runner a result came from; a merged report makes
#: one environment per value (fixtures/allure/allurerc.mjs reads it by this name)
RUNNER_LABEL = "runner"


def runner_name(environ: dict[str, str] | None = None) -> str:
    """``$SEV_RUNNER`` if set and not blank, else the hostname."""
    env = os.environ if environ is None else environ
    name = (env.get(ENV_VAR) or "").strip()
    return name or socket.gethostname() or "unknown-runner"
