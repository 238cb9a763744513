"""The gateway's side of the workers: the pool of each endpoint and its policy, starting
workers and zygotes, supervising them, their resource limits. Runs in the gateway's
event loop; meets the processes it starts only through ``workers.wire``."""
