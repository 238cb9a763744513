"""The front door: the listener, the app's assembly, routing, SigV4 and the caller's
authentication, the two wire protocols (AWS JSON 1.1 for the control plane, REST-JSON
for InvokeEndpoint), and the one place every failure becomes a wire error. Everything
HTTP is here; the planes behind it work on plain values."""
