"""The invocation path behind the edge: resolve the endpoint's deployment, take admission
tokens or throttle, run the call on the endpoint's pool, record what it cost; and the
live state the gauges read."""
