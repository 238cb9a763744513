"""Enforcing a worker's ``ResourcePlan``: cgroup v2, cgroup v1, or affinity as a fallback.

The gateway picks one ``Enforcer`` at start (``detect_enforcer``). For each worker it calls
``prepare`` (create the worker's cgroups and write their limits), hands the returned
``Placement`` to the worker process, which joins it before running model code, and after
the worker exited calls ``out_of_memory`` then ``release``. ``close`` at shutdown removes
the gateway's own cgroups.

Layout (``<pid>`` is the gateway's process id, ``<name>`` the worker's name):

- cgroup v2: ``<base>/coldbrew-<pid>/<name>``, where ``<base>`` is the parent of the
  gateway's own cgroup (its beside, not inside, the gateway's group: a v2 group that holds
  processes cannot pass controllers down), or the root when the gateway is in the root.
  ``+cpu +memory`` are enabled in ``<base>`` and ``coldbrew-<pid>``'s subtree_control.
- cgroup v1: ``<cpu mount>/<own cpu cgroup>/coldbrew-<pid>/<name>`` and the same under the
  memory mount, the gateway's own groups read from /proc/self/cgroup.
- fallback: no cgroups; each worker is pinned to ``threads`` CPUs, taken round-robin so
  workers spread, and its memory and disk are left to the caller's watchdogs.

``coldbrew-<n>`` groups whose process ``n`` is gone (a gateway killed without ``close``;
its workers die with it) are removed when the next gateway starts, if they hold no
processes. A pid reused since is told apart by its start time.

Modules: ``detect`` (choosing the mode), ``enforcers`` (cgroup v2 and v1), ``fallback``,
``files`` (the cgroup filesystem operations) and ``sweep`` (stale groups). Importers use
the names exported here.
"""

from workers.pool.cgroups.detect import detect_enforcer
from workers.pool.cgroups.enforcers import Cgroup1Enforcer, Cgroup2Enforcer, EnforcerUnavailable
from workers.pool.cgroups.fallback import FallbackEnforcer
from workers.pool.limits import Enforcer

__all__ = [
    "Cgroup1Enforcer",
    "Cgroup2Enforcer",
    "Enforcer",
    "EnforcerUnavailable",
    "FallbackEnforcer",
    "detect_enforcer",
]
