"""The kinds and states of a NOC alert."""

from __future__ import annotations

from enum import StrEnum


class AlertKind(StrEnum):
    INBOUND_ATTACK = "inbound_attack"  # a flood towards a customer's server (traffic)
    DNS_FLOOD = "dns_flood"  # a random-subdomain flood on a customer's zones (DNS load)

    @property
    def label(self) -> str:
        return {
            AlertKind.INBOUND_ATTACK: "Inbound attack on a customer",
            AlertKind.DNS_FLOOD: "Random-subdomain flood on a customer's zones",
        }[self]


class AlertState(StrEnum):
    OPEN = "open"  # firing, nobody has looked yet
    ACKNOWLEDGED = "acknowledged"  # a NOC engineer has it in hand
