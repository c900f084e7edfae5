"""Clean-MX plain-text reports: a table of offending sites in the body of a (PGP-signed) mail.

Clean-MX sends two shapes. The X-ARF one (``X-ARF: yes`` and a ``report.txt`` part) is read by
``xarf_legacy``. This module reads the other: a subject ``[clean-mx-<kind>-<id>](ip)-->(...)``
and a body table::

    |date                  |id      |virusname     |ip           |domain     |Url|
    |2015-09-14 07:49:54 CEST |81328588 |JS/iFrame.cqq |172.16.10.13 |victim.tld |http://...

The columns are found by their names, so the phishing and portals tables read the same way.
Each row becomes a finding; the kind comes from the subject.
"""

from __future__ import annotations

import email.message
import re
from typing import Any

from abusedesk.intake.formats import _mail
from abusedesk.intake.formats._extract import canonical_ip, is_hostname, refang
from abusedesk.intake.formats.base import (
    Finding,
    LimitExceeded,
    Limits,
    MalformedReport,
    NotThisFormat,
    ParsedReport,
    ReportFormat,
)
from abusedesk.policy.choices import Category

CATEGORY_BY_KIND: dict[str, Category] = {
    "viruses": Category.MALWARE,
    "virus": Category.MALWARE,
    "phishing": Category.PHISHING,
    "portals": Category.VULNERABLE_SERVICE,  # defaced or compromised sites: the customer's to fix
}

_SUBJECT = re.compile(r"\[clean-mx-([a-z]+)-(\d+)\]", re.I)


def recognise(message: email.message.EmailMessage | None, raw: bytes) -> bool:
    if message is None:
        return False
    sender = _mail.address(message, "From")[1].lower()
    subject = _mail.header(message, "Subject")
    if not (sender.endswith("clean-mx.de") or _SUBJECT.search(subject)):
        return False
    try:
        text, _ = _mail.body_text(message, Limits())
    except Exception:
        return False
    return _header_row(text.splitlines()) is not None


def parse(message: email.message.EmailMessage | None, raw: bytes, limits: Limits) -> ParsedReport:
    if message is None:
        raise NotThisFormat("a Clean-MX report is a MIME message")
    text, _ = _mail.body_text(message, limits)
    lines = text.splitlines()
    found = _header_row(lines)
    if found is None:
        raise NotThisFormat("no Clean-MX table in the body")
    index, columns = found
    subject = _mail.header(message, "Subject")
    kind_match = _SUBJECT.search(subject)
    kind = kind_match.group(1).lower() if kind_match else ""
    findings: list[Finding] = []
    for line in lines[index + 1 :]:
        stripped = line.strip()
        if not stripped.startswith("|"):
            if findings and stripped and not stripped.startswith("+"):
                break
            continue
        cells = [c.strip() for c in stripped.strip("|").split("|")]
        if len(cells) < len(columns) - 1:
            continue
        row = dict(zip(columns, cells, strict=False))
        finding = _finding(row, kind)
        if finding is not None:
            if len(findings) >= limits.max_findings:
                raise LimitExceeded(f"the report has more than {limits.max_findings} rows")
            findings.append(finding)
    if not findings:
        raise MalformedReport("the Clean-MX table has no rows")
    name, addr = _mail.address(message, "From")
    fields: dict[str, Any] = {"kind": kind, "columns": columns}
    if kind_match:
        fields["report_id"] = kind_match.group(2)
    return _mail.mail_report(
        message, ReportFormat.CLEANMX, name, addr, tuple(findings), fields, subject=subject
    )


def _header_row(lines: list[str]) -> tuple[int, list[str]] | None:
    for number, line in enumerate(lines[:2000]):
        stripped = line.strip()
        if not stripped.startswith("|"):
            continue
        names = [c.strip().lower() for c in stripped.strip("|").split("|")]
        if "ip" in names and ("url" in names or "domain" in names):
            return number, names
    return None


def _finding(row: dict[str, str], kind: str) -> Finding | None:
    ip = canonical_ip(row.get("ip", ""))
    url = refang(row.get("url", ""))
    domain = row.get("domain", "").lower()
    if not ip and "://" not in url and not is_hostname(domain):
        return None
    label = row.get("virusname") or row.get("target") or row.get("phishing_target") or kind
    return Finding(
        category=CATEGORY_BY_KIND.get(kind),
        addresses=(ip,) if ip else (),
        urls=(url,) if "://" in url else (),
        domains=(domain,) if is_hostname(domain) else (),
        event_time=_mail.parse_datetime(row.get("date", "")),
        description=f"Clean-MX {kind or 'report'}: {label}".strip(),
        evidence=dict(row),
        kind=kind,
    )
