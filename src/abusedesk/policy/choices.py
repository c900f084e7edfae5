"""The kinds the policy speaks of. Values are what the database, the API and the TOML file use."""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"
    INFO = "info"

    @property
    def label(self) -> str:
        return self.value.capitalize()


class Category(StrEnum):
    """AUP.md's per se violations (1–10) and further categories."""

    COPYRIGHT = "copyright"
    SPAM = "spam"
    ILLEGAL_USE = "illegal_use"
    CSAM = "csam"
    THREATS_HARASSMENT = "threats_harassment"
    FRAUD = "fraud"
    DENIAL_OF_SERVICE = "denial_of_service"
    TERRORIST_CONTENT = "terrorist_content"
    MALWARE = "malware"
    PHISHING = "phishing"
    NETWORK_ABUSE = "network_abuse"
    DNS_OVERUSE = "dns_overuse"
    UNLAWFUL_CONTENT = "unlawful_content"
    BILLING_FRAUD = "billing_fraud"
    VULNERABLE_SERVICE = "vulnerable_service"


class RepeatAction(StrEnum):
    """What a repeat violation does to the new case."""

    SHORTEN = "shorten"  # the response window becomes the policy's shortened window
    DISCONNECT = "disconnect"  # services are disconnected as the case opens
    NONE = "none"  # a repeat is marked, nothing more
