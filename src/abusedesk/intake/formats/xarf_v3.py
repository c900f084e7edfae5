"""XARF v3: the JSON format before v4's categories and types.

A v3 report is ``{"Version": "3...", "ReporterInfo": {...}, "Report": {...}}``. Two spellings
are in use and both are read: the source as ``Report.Source`` (``{"IP": ..., "Port": ...}`` or
``{"URL": ...}``) or as ``Report.SourceIp`` / ``SourcePort`` / ``Url``; extra facts under
``Report.AdditionalInfo`` or directly in ``Report``. No published schema fits both, so the parser
checks what it needs itself (Version, ReporterInfo.ReporterOrg and an e-mail address,
Report.ReportType, Report.Date and a source) and lists every one that is missing.
"""

from __future__ import annotations

import email.message
from typing import Any

from abusedesk.intake.formats import _json, _mail
from abusedesk.intake.formats._extract import bounded_json, canonical_ip, is_hostname, refang
from abusedesk.intake.formats.base import (
    Finding,
    Limits,
    MalformedReport,
    NotThisFormat,
    ParsedReport,
    ReportFormat,
)
from abusedesk.policy.choices import Category

# v3 report types (any case, "-" or "_") -> AUP category.
CATEGORY_BY_REPORT_TYPE: dict[str, Category] = {
    "spam": Category.SPAM,
    "login_attack": Category.NETWORK_ABUSE,
    "port_scan": Category.NETWORK_ABUSE,
    "scan": Category.NETWORK_ABUSE,
    "ddos": Category.DENIAL_OF_SERVICE,
    "phishing": Category.PHISHING,
    "malware": Category.MALWARE,
    "botnet": Category.MALWARE,
    "bot": Category.MALWARE,
    "copyright": Category.COPYRIGHT,
    "fraud": Category.FRAUD,
    "vulnerability": Category.VULNERABLE_SERVICE,
}


def recognise(message: email.message.EmailMessage | None, raw: bytes) -> bool:
    doc = _json.peek(message, raw)
    return (
        doc is not None
        and str(doc.get("Version", "")).startswith("3")
        and isinstance(doc.get("Report"), dict)
    )


def parse(message: email.message.EmailMessage | None, raw: bytes, limits: Limits) -> ParsedReport:
    found = _json.document(message, raw, limits)
    if found is None:
        raise NotThisFormat("no JSON document")
    doc, where = found
    if not isinstance(doc, dict) or not str(doc.get("Version", "")).startswith("3"):
        raise NotThisFormat("not an XARF v3 report")
    doc = bounded_json(doc, limits.max_json_nodes)
    reporter = _dict(doc.get("ReporterInfo"))
    report = _dict(doc.get("Report"))
    source = _dict(report.get("Source"))
    extra = _dict(report.get("AdditionalInfo"))

    ip_text = _text(source.get("IP")) or _text(report.get("SourceIp"))
    url_text = refang(_text(source.get("URL")) or _text(report.get("Url")))
    domain_text = _text(source.get("Domain")) or _text(report.get("SourceDomain"))
    report_type = _text(report.get("ReportType"))
    email_address = _text(reporter.get("ReporterContactEmail")) or _text(
        reporter.get("ReporterOrgEmail")
    )
    problems = [
        message
        for ok, message in (
            (bool(_text(reporter.get("ReporterOrg"))), "ReporterInfo.ReporterOrg is missing"),
            (bool(email_address), "ReporterInfo has no e-mail address"),
            (bool(report), "Report is missing"),
            (bool(report_type), "Report.ReportType is missing"),
            (bool(_text(report.get("Date"))), "Report.Date is missing"),
            (bool(ip_text or url_text or domain_text), "Report names no source (IP, URL, domain)"),
        )
        if not ok
    ]
    event_time = _mail.parse_datetime(_text(report.get("Date")))
    if _text(report.get("Date")) and event_time is None:
        problems.append(f"Report.Date {report.get('Date')!r} is not a date")
    address = canonical_ip(ip_text) if ip_text else None
    if ip_text and address is None:
        problems.append(f"the source IP {ip_text!r} is not an IP address")
    if problems:
        raise MalformedReport(f"{where} is not a valid XARF v3 report: {problems[0]}", problems)

    port_value = source.get("Port", report.get("SourcePort"))
    port = port_value if isinstance(port_value, int) and 0 < port_value < 65536 else None
    key = report_type.lower().replace("-", "_")
    finding = Finding(
        category=CATEGORY_BY_REPORT_TYPE.get(key),
        addresses=(address,) if address else (),
        urls=(url_text,) if "://" in url_text else (),
        domains=(domain_text.lower(),) if is_hostname(domain_text) else (),
        event_time=event_time,
        port=port,
        description=_text(report.get("AttackDescription"))
        or _text(extra.get("Description"))
        or f"{_text(report.get('ReportClass'))} {report_type}".strip(),
        evidence={k: v for k, v in report.items() if k not in ("Attachment", "Samples")}
        | {"attachments": _attachment_summary(report)},
        kind=key,
    )
    name = _text(reporter.get("ReporterContactName")) or _text(reporter.get("ReporterOrg"))
    fields: dict[str, Any] = {
        "xarf_version": _text(doc.get("Version")),
        "reporter_org": _text(reporter.get("ReporterOrg")),
        "reporter_domain": _text(reporter.get("ReporterOrgDomain")),
        "report_class": _text(report.get("ReportClass")),
        "report_type": report_type,
    }
    subject, message_id, received = "", None, None
    if message is not None:
        subject = _mail.header(message, "Subject")
        message_id = _mail.message_id(message)
        received = _mail.parse_datetime(_mail.header(message, "Date"))
    return ParsedReport(
        format=ReportFormat.XARF_V3,
        reporter_name=name,
        reporter_email=email_address,
        subject=subject,
        message_id=message_id,
        received_time=received,
        findings=(finding,),
        fields=fields,
    )


def _attachment_summary(report: dict[str, Any]) -> list[dict[str, Any]]:
    # Payloads stay in the stored raw report; the parsed result lists what was attached.
    items = report.get("Attachment") or report.get("Samples") or []
    out: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            data = item.get("Data", item.get("Payload"))
            out.append(
                {
                    "content_type": _text(item.get("ContentType")),
                    "description": _text(item.get("Description")),
                    "payload_chars": len(data) if isinstance(data, str) else 0,
                }
            )
    return out


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
