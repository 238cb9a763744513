"""The control-plane operations (CreateModel, Describe*, List*, ...)."""
