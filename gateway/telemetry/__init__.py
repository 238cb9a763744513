"""Traces and metrics of the gateway, in the OpenTelemetry FaaS conventions."""
