"""The ``coldbrew`` command: ``serve`` runs a gateway; every other command is a client of
the SageMaker API, so it works against a remote gateway too."""
