"""What the gateway keeps: the registry of models, endpoint configs and endpoints, and
the model artifacts they point to."""
