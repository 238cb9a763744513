"""The message types of the wire: a reader tells a frame's message by its ``t`` alone."""

from __future__ import annotations

import typing

import pytest

from workers.wire import messages

DIRECTIONS = {
    "gateway to worker": messages.GatewayToWorker,
    "worker to gateway": messages.WorkerToGateway,
    "gateway to zygote": messages.GatewayToZygote,
    "zygote to gateway": messages.ZygoteToGateway,
}


def members(union: object) -> tuple[type, ...]:
    """The message types of a union (or the one type that is no union)."""
    return typing.get_args(union) or (typing.cast(type, union),)


def kind(message: type) -> str:
    """The ``t`` a message type declares, from its ``Literal``."""
    (t,) = typing.get_args(typing.get_type_hints(message)["t"])
    return typing.cast(str, t)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_messages_one_way_differ_in_t(direction: str) -> None:
    """Readers dispatch on ``t``: no two messages sent the same way share one."""
    kinds = [kind(message) for message in members(DIRECTIONS[direction])]
    assert len(kinds) == len(set(kinds)), kinds


def test_every_declared_message_is_sent_some_way() -> None:
    """Each type with a ``t`` is in the union frames are typed with, so senders of a new
    message cannot skip declaring it."""
    declared = {
        value
        for value in vars(messages).values()
        if typing.is_typeddict(value) and "t" in value.__annotations__
    }
    assert declared == set(members(messages.Message))
    sent = {message for union in DIRECTIONS.values() for message in members(union)}
    assert sent == declared
