"""SpamCop reports: spam sent from an address, or a web site advertised in spam.

SpamCop mails its reports from ``<id>@reports.spamcop.net`` in two shapes. Newer reports are ARF
(``multipart/report; report-type=feedback-report``); they are read by ``arf`` and labelled
SpamCop. Plain reports put the facts in the body, before the offending message::

    [ SpamCop V5.4.0 ]
    This message is brief for your comfort.  Please use links below for details.

    Email from 192.0.2.25 / Mon, 11 Mar 2024 09:12:45 -0000
    https://www.spamcop.net/sc?id=z...

    [ Offending message ]
    Return-Path: <...>

or, for a spamvertised site::

    Spamvertised web site: http://bad.example/offer
    https://www.spamcop.net/w3m?i=z...
    http://bad.example/offer is 192.0.2.80; Mon, 11 Mar 2024 09:12:45 -0000

A reporter's own words, when there are any, follow "Comments from recipient" and are kept.
"""

from __future__ import annotations

import email.message
import re
from dataclasses import replace
from typing import Any

from abusedesk.intake.formats import _mail, arf
from abusedesk.intake.formats._extract import canonical_ip, host_of, is_hostname, refang
from abusedesk.intake.formats.base import (
    Finding,
    Limits,
    MalformedReport,
    NotThisFormat,
    ParsedReport,
    ReportFormat,
)
from abusedesk.policy.choices import Category

_EMAIL_FROM = re.compile(r"(?im)^\s*Email from\s+([0-9A-Fa-f:.]+)\s*/\s*(.+?)\s*$")
_SPAMVERTISED = re.compile(r"(?im)^\s*Spamvertised web site:\s*(\S+)\s*$")
_SITE_IS = re.compile(r"(?im)^\s*(\S+)\s+is\s+([0-9A-Fa-f:.]+)\s*;\s*(.+?)\s*$")
_BANNER = re.compile(r"(?i)\[\s*SpamCop V[\d.]+\s*\]|-\s*SpamCop V[\d.]+\s*-")
_COMMENTS = re.compile(
    r"(?is)Comments from recipient.*?\]\s*\n(.*?)(?:\n\s*\n\s*\n|\[\s*Offending message\s*\]|$)"
)
_SPAMCOP_ID = re.compile(r"(?i)\bid:\s*(\d+)")


def recognise(message: email.message.EmailMessage | None, raw: bytes) -> bool:
    if message is None:
        return False
    sender = _mail.address(message, "From")[1].lower()
    if sender.endswith("@reports.spamcop.net"):
        return True
    try:
        text, _ = _mail.body_text(message, Limits())
    except Exception:
        return False
    return bool(_BANNER.search(text)) and "[ Offending message ]" in text


def parse(message: email.message.EmailMessage | None, raw: bytes, limits: Limits) -> ParsedReport:
    if message is None:
        raise NotThisFormat("a SpamCop report is a MIME message")
    text, _ = _mail.body_text(message, limits)
    comments = _comments(text)
    subject = _mail.header(message, "Subject")
    report_id = _SPAMCOP_ID.search(subject)
    extra: dict[str, Any] = {"spamcop_id": report_id.group(1) if report_id else ""}
    if comments:
        extra["recipient_comments"] = comments
    if arf.recognise(message, raw):
        report = arf.parse(message, raw, limits)
        return replace(report, format=ReportFormat.SPAMCOP, fields={**report.fields, **extra})

    findings: list[Finding] = []
    for match in _EMAIL_FROM.finditer(text):
        address = canonical_ip(match.group(1))
        if address:
            findings.append(
                Finding(
                    category=Category.SPAM,
                    addresses=(address,),
                    event_time=_mail.parse_datetime(match.group(2)),
                    description=f"Spam sent from {address}",
                    evidence={"line": match.group(0).strip()},
                    kind="spam",
                )
            )
    for match in _SPAMVERTISED.finditer(text):
        url = refang(match.group(1))
        host = host_of(url)
        site = next((m for m in _SITE_IS.finditer(text) if m.group(1) == match.group(1)), None)
        address = canonical_ip(site.group(2)) if site else None
        findings.append(
            Finding(
                category=Category.SPAM,  # a site advertised in spam: supporting spam (AUP 2)
                addresses=(address,) if address else (),
                urls=(url,) if "://" in url else (),
                domains=(host,) if is_hostname(host) else (),
                event_time=_mail.parse_datetime(site.group(3)) if site else None,
                description=f"Web site advertised in spam: {url}",
                evidence={"line": match.group(0).strip()},
                kind="spamvertised",
            )
        )
    if not findings:
        if not _BANNER.search(text):  # a summary or an alert, not a report: a person reads it
            raise NotThisFormat("a SpamCop mail that is not a spam report")
        raise MalformedReport("the SpamCop report names no source address or spamvertised site")
    offending = text.split("[ Offending message ]", 1)
    if len(offending) == 2:
        extra["offending_message_headers"] = offending[1].strip()[:8192]
    name, addr = _mail.address(message, "From")
    return _mail.mail_report(
        message, ReportFormat.SPAMCOP, name, addr, tuple(findings), extra, subject=subject
    )


def _comments(text: str) -> str:
    match = _COMMENTS.search(text)
    if not match:
        return ""
    return " ".join(line.lstrip("> ").strip() for line in match.group(1).splitlines()).strip()[
        :2000
    ]
