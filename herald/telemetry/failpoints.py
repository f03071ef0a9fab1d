"""Named points where a test can make this process die, as a host does, at a chosen moment.

`HERALD_FAILPOINT=name:n` SIGKILLs the process the n-th time it passes `hit("name")`: a kill
that must land between two steps (outputs sent, the state recording them not yet written)
is then certain instead of lucky. Unset, a hit costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def _armed() -> dict[str, int]:
    spec = os.environ.get("HERALD_FAILPOINT", "")
    name, _, count = spec.partition(":")
    return {name: int(count or 1)} if name else {}


_ARMED = _armed()
_HITS: dict[str, int] = {}


def hit(name: str) -> None:
    if name not in _ARMED:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    if _HITS[name] == _ARMED[name]:
        os.kill(os.getpid(), signal.SIGKILL)
