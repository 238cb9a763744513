"""``ArtifactError``, the one error artifacts raise, and ``fail``, which raises it."""

from __future__ import annotations

from typing import NoReturn


class ArtifactError(Exception):
    """A ModelDataUrl cannot be turned into a model directory.

    ``message`` names ModelDataUrl and says what is wrong; it is fit to show the user as a
    ValidationException message or an endpoint's FailureReason.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def fail(url: str, problem: str) -> NoReturn:
    """Raise the ArtifactError for ``url``, saying what the ``problem`` is."""
    raise ArtifactError(f"ModelDataUrl {url!r}: {problem}")
