"""X-ARF 0.1 and 0.2: abuse reports as mail with a machine-readable YAML part.

The message carries an ``X-XARF`` (or ``X-ARF``) header and three parts: a text for humans, a
``report.txt`` part holding a flat YAML mapping (``Reported-From``, ``Category``, ``Report-Type``,
``Source-Type``, ``Source``, ``Date``, ``Port``, ...), and the evidence named by ``Attachment``
(a log excerpt, say). Blocklist.de, Netcraft and Clean-MX send it.

The YAML is read with PyYAML's BaseLoader, which builds no objects and types nothing: every value
stays the string the sender wrote. Senders do not always write valid YAML (Clean-MX puts
``http: //`` in values), so a report that YAML refuses is read line by line as ``Key: value``,
and ``fields["yaml_fallback"]`` says so.
"""

from __future__ import annotations

import email.message
import re
from typing import Any

import yaml

from abusedesk.intake.formats import _mail
from abusedesk.intake.formats._extract import (
    bounded_json,
    canonical_ip,
    is_hostname,
    refang,
    unique,
)
from abusedesk.intake.formats.base import (
    Finding,
    Limits,
    MalformedReport,
    NotThisFormat,
    ParsedReport,
    ReportFormat,
)
from abusedesk.policy.choices import Category

# X-ARF report types (abuse_*, fraud_*, info_* schemas, and what senders use in practice).
CATEGORY_BY_REPORT_TYPE: dict[str, Category] = {
    "login-attack": Category.NETWORK_ABUSE,
    "login_attack": Category.NETWORK_ABUSE,
    "bruteforce": Category.NETWORK_ABUSE,
    "ssh": Category.NETWORK_ABUSE,
    "ftp": Category.NETWORK_ABUSE,
    "imap": Category.NETWORK_ABUSE,
    "portscan": Category.NETWORK_ABUSE,
    "port-scan": Category.NETWORK_ABUSE,
    "scan": Category.NETWORK_ABUSE,
    "sip": Category.NETWORK_ABUSE,
    "hacking": Category.NETWORK_ABUSE,
    "badbot": Category.NETWORK_ABUSE,
    "ddos": Category.DENIAL_OF_SERVICE,
    "malware-attack": Category.MALWARE,
    "malware": Category.MALWARE,
    "virus": Category.MALWARE,
    "botnet": Category.MALWARE,
    "bot": Category.MALWARE,
    "phishing": Category.PHISHING,
    "fraud": Category.FRAUD,
    "spam": Category.SPAM,
    "mail": Category.SPAM,
    "regbot": Category.SPAM,  # bots registering on forums and wikis to post spam
    "harvesting": Category.SPAM,  # address harvesting, the groundwork of spam
    "copyright": Category.COPYRIGHT,
}
CATEGORY_BY_XARF_CATEGORY: dict[str, Category] = {
    "fraud": Category.FRAUD,
    "malware": Category.MALWARE,
    "abuse": Category.NETWORK_ABUSE,
}
_ADDRESS_TYPES = frozenset({"ip-address", "ipv4", "ipv6", "ip", "ipaddress"})
_URL_TYPES = frozenset({"uri", "url"})
_DOMAIN_TYPES = frozenset({"domain", "fqdn", "hostname"})
_MAX_REPORT_CHARS = 64 * 1024
_MAX_EVIDENCE_CHARS = 16 * 1024


def recognise(message: email.message.EmailMessage | None, raw: bytes) -> bool:
    if message is None:
        return False
    if _mail.header(message, "X-XARF") or _mail.header(message, "X-ARF"):
        return _report_part(message, Limits()) is not None
    return False


def parse(message: email.message.EmailMessage | None, raw: bytes, limits: Limits) -> ParsedReport:
    if message is None:
        raise NotThisFormat("an X-ARF report is a MIME message")
    found = _report_part(message, limits)
    if found is None:
        raise NotThisFormat("no X-ARF report.txt part")
    part, text = found
    report, fallback = read_report(text, limits)
    if not report:
        raise MalformedReport("the X-ARF report part holds no fields")
    keyed = {k.lower(): v for k, v in report.items()}

    source_type = _str(keyed.get("source-type")).lower()
    source = refang(_str(keyed.get("source")))
    addresses: list[str] = []
    urls: list[str] = []
    domains: list[str] = []
    if source:
        ip = canonical_ip(source)
        if ip:
            addresses.append(ip)
        elif source_type in _ADDRESS_TYPES:
            pass  # said to be an address but is not one: reported below if nothing else is
        elif source_type in _URL_TYPES or "://" in source:
            urls.append(source)
        elif source_type in _DOMAIN_TYPES or is_hostname(source):
            domains.append(source.lower())
    for key in ("download-link", "url", "uri"):
        value = refang(_str(keyed.get(key)))
        if "://" in value:
            urls.append(value)
    named_domain = _str(keyed.get("domain")).lower()
    if is_hostname(named_domain):
        domains.append(named_domain)
    if not addresses and not urls and not domains:
        raise MalformedReport(
            "the X-ARF report names no source",
            [f"Source {source!r} of type {source_type!r} is not an address, URL or domain"],
        )

    report_type = _str(keyed.get("report-type")).lower()
    xarf_category = _str(keyed.get("category")).lower()
    category = CATEGORY_BY_REPORT_TYPE.get(report_type) or CATEGORY_BY_XARF_CATEGORY.get(
        xarf_category
    )
    port = None
    for key in ("port", "source-port", "download-port"):
        value = _str(keyed.get(key))
        if value.isdigit() and 0 < int(value) < 65536:
            port = int(value)
            break

    evidence: dict[str, Any] = dict(report)
    attachment = _evidence_text(message, part, limits)
    if attachment:
        evidence["attachment_text"] = attachment
    description, _ = _mail.body_text(message, limits)
    name, addr = _mail.address(message, "From")
    finding = Finding(
        category=category,
        addresses=tuple(unique(addresses)),
        urls=tuple(unique(urls)),
        domains=tuple(unique(d for d in domains if d)),
        event_time=_mail.parse_datetime(_str(keyed.get("date"))),
        port=port,
        description=description.strip()[:4000],
        evidence=evidence,
        kind=report_type or xarf_category,
    )
    extras: dict[str, Any] = {
        "xarf_version": _str(keyed.get("version")),
        "xarf_category": xarf_category,
        "report_type": report_type,
        "reported_from": _str(keyed.get("reported-from")),
        "report_id": _str(keyed.get("report-id")),
        "user_agent": _str(keyed.get("user-agent")),
    }
    if fallback:
        extras["yaml_fallback"] = True
    return _mail.mail_report(message, ReportFormat.XARF_LEGACY, name, addr, (finding,), extras)


def read_report(text: str, limits: Limits) -> tuple[dict[str, Any], bool]:
    """The report.txt mapping, and whether the lenient line reader had to be used."""
    body = text.strip().removeprefix("\ufeff")
    try:
        loaded = yaml.load(body, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds no objects
    except yaml.YAMLError:
        loaded = None
    except RecursionError as exc:
        raise MalformedReport("the X-ARF report nests too deeply") from exc
    if isinstance(loaded, dict):
        data = bounded_json(loaded, limits.max_json_nodes)
        return {str(k): v for k, v in data.items()}, False
    return _read_lines(body), True


def _read_lines(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z][A-Za-z0-9_-]{0,63}):\s*(.*?)\s*$", line)
        if match:
            out.setdefault(match.group(1), match.group(2))
    return out


def _report_part(
    message: email.message.Message, limits: Limits
) -> tuple[email.message.Message, str] | None:
    try:
        parts = _mail.walk(message, limits)
    except Exception:
        return None
    for item in parts:
        part = item.part
        if item.in_attached_message or part.is_multipart():
            continue
        named = _mail.filename(part).lower() == "report.txt"
        ctype = _mail.content_type(part)
        if not named and ctype not in ("text/plain", "text/x-yaml", "application/x-yaml"):
            continue
        text = _mail.part_text(part, _MAX_REPORT_CHARS)
        looks_like_report = named or re.match(r"\s*---\s*\n", text)
        if looks_like_report and re.search(r"(?im)^(report-type|source|reported-from)\s*:", text):
            return part, text
    return None


def _evidence_text(
    message: email.message.Message, report: email.message.Message, limits: Limits
) -> str:
    # The evidence is the part after report.txt (X-ARF: "Attachment" names its type).
    seen = False
    for item in _mail.walk(message, limits):
        if item.part is report:
            seen = True
            continue
        if seen and not item.part.is_multipart() and not item.in_attached_message:
            if _mail.content_type(item.part).startswith("text/"):
                return _mail.part_text(item.part, _MAX_EVIDENCE_CHARS)
            return ""
    return ""


def _str(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()
