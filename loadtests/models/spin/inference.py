"""Spin: burns CPU for a given wall-clock time and says how much CPU it got.

Body (JSON): ``{"seconds": S}`` spins for S seconds of wall-clock time; an optional
``"cpu": K`` first pins the worker to CPU K when K is among the CPUs it may use (so two
workers can be made to compete for one core). Answer (JSON): ``{"cpu_s", "wall_s",
"pid", "pinned"}``, where ``cpu_s`` is the process CPU time spent spinning: under a CPU
cap or a weighted share it is less than ``wall_s``.
"""

import json
import os
import time

# Iterations between clock reads: cheap enough that the clock is read often.
BATCH = 2000


def model_fn(model_dir):
    return "spin"


def pin(cpu):
    if cpu is None or cpu not in os.sched_getaffinity(0):
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def transform_fn(model, body, content_type, accept):
    request = json.loads(body)
    pinned = pin(request.get("cpu"))
    wall0, cpu0 = time.monotonic(), time.process_time()
    end = wall0 + float(request["seconds"])
    total = 0
    while time.monotonic() < end:
        for i in range(BATCH):
            total += i
    answer = {
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.monotonic() - wall0,
        "pid": os.getpid(),
        "pinned": pinned,
    }
    return json.dumps(answer), "application/json"
