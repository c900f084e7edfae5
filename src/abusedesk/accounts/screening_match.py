"""Matching a would-be customer against the refuse-service list (R3). Pure.

What counts as a match, and why:
- a name equal to the entry's, ignoring case, accents written as compatibility characters
  (NFKC) and runs of white space ("ACME  hosting" is "Acme Hosting");
- an e-mail address the entry lists, exactly (ignoring case);
- an e-mail address in a domain the entry lists, or in a subdomain of it;
- a domain the entry lists, or a subdomain of it.
The domain of a listed *address* is not a match by itself: an entry naming one gmail.com user
must not refuse every other. To refuse a whole domain, list the domain.
"""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from abusedesk.accounts.choices import ScreeningKind


class Screened(Protocol):
    """What the matcher reads of an entry (a ScreeningEntry row, or anything shaped like it)."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> ScreeningKind: ...
    @property
    def name(self) -> str: ...
    @property
    def emails(self) -> Sequence[Any]: ...
    @property
    def domains(self) -> Sequence[Any]: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ScreeningMatch:
    entry_id: int
    kind: ScreeningKind
    name: str
    reason: str
    why: tuple[str, ...]

    def describe(self) -> str:
        label = f"{self.name!r} " if self.name else ""
        return (
            f"screening entry #{self.entry_id} {label}({self.kind.value}), listed because: "
            f"{self.reason}; matched on {', '.join(self.why)}"
        )


def normalise_name(value: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def normalise_domain(value: str) -> str:
    """Lower case, no trailing dot, no leading "*." (subdomains always count), IDNA."""
    name = value.strip().rstrip(".").lower().removeprefix("*.")
    if not name.isascii():
        # A name the codec refuses is matched as typed; the list itself never holds one.
        with contextlib.suppress(UnicodeError):
            name = name.encode("idna").decode("ascii")
    return name


def is_within(domain: str, listed: str) -> bool:
    return bool(listed) and (domain == listed or domain.endswith("." + listed))


def screening_matches(
    entries: Iterable[Screened],
    name: str | Iterable[str],
    emails: Iterable[str],
    domains: Iterable[str],
) -> list[ScreeningMatch]:
    """The entries the candidate matches, each with why. `name` may be several (an account's
    name and its billing name); empty values are ignored."""
    names = {normalise_name(n) for n in ([name] if isinstance(name, str) else name)} - {""}
    addresses = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
    hosts = list(dict.fromkeys(normalise_domain(d) for d in domains if d and d.strip()))
    found = []
    for entry in entries:
        why: list[str] = []
        if entry.name and normalise_name(entry.name) in names:
            why.append(f"the name {entry.name!r}")
        listed_emails = {str(e).strip().lower() for e in entry.emails}
        listed_domains = [normalise_domain(str(d)) for d in entry.domains]
        for address in addresses:
            if address in listed_emails:
                why.append(f"the e-mail {address}")
                continue
            at_domain = normalise_domain(address.rpartition("@")[2])
            for listed in listed_domains:
                if is_within(at_domain, listed):
                    why.append(f"the e-mail {address} (domain {listed})")
                    break
        for host in hosts:
            for listed in listed_domains:
                if is_within(host, listed):
                    why.append(
                        f"the domain {host}" if host == listed else f"the domain {host} ({listed})"
                    )
                    break
        if why:
            found.append(ScreeningMatch(entry.id, entry.kind, entry.name, entry.reason, tuple(why)))
    return found
