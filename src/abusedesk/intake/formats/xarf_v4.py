"""XARF v4: one JSON object per report, validated against the published schemas.

The schemas ship with this package under ``schemas/xarf-v4/`` (``xarf-core.json``, the master
schema ``xarf-v4-master.json`` and one schema per category and type in ``types/``); see the
README there for where they come from. A report must validate against the master schema, which
checks the core fields, rejects unknown category/type pairs and applies the type's schema. Every
failure is listed in the ``MalformedReport``'s ``problems``. ``$ref``s resolve inside the shipped
set only: nothing is fetched.

The report arrives as the raw input (the API) or as a JSON part of a mail. Evidence payloads are
not copied into the parsed result (the stored raw report keeps them): each item keeps its
content type, description, hash and the payload's length. For ``csam`` and ``csem`` reports the
payload is never decoded or looked at.
"""

from __future__ import annotations

import email.message
import functools
import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

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

# (XARF category, type) -> AUP category.
CATEGORY_BY_TYPE: dict[tuple[str, str], Category] = {
    ("messaging", "spam"): Category.SPAM,
    ("messaging", "bulk_messaging"): Category.SPAM,
    ("connection", "ddos"): Category.DENIAL_OF_SERVICE,
    ("connection", "infected_host"): Category.MALWARE,
    ("connection", "login_attack"): Category.NETWORK_ABUSE,
    ("connection", "port_scan"): Category.NETWORK_ABUSE,
    ("connection", "reconnaissance"): Category.NETWORK_ABUSE,
    ("connection", "scraping"): Category.NETWORK_ABUSE,
    ("connection", "sql_injection"): Category.NETWORK_ABUSE,
    ("connection", "vulnerability_scan"): Category.NETWORK_ABUSE,
    ("content", "phishing"): Category.PHISHING,
    ("content", "malware"): Category.MALWARE,
    ("content", "csam"): Category.CSAM,
    ("content", "csem"): Category.CSAM,  # exploitation material: handled as CSAM, zero tolerance
    ("content", "exposed_data"): Category.VULNERABLE_SERVICE,
    ("content", "brand_infringement"): Category.COPYRIGHT,  # AUP 1: copyright or trademark
    ("content", "fraud"): Category.FRAUD,
    ("content", "remote_compromise"): Category.VULNERABLE_SERVICE,
    ("content", "suspicious_registration"): Category.FRAUD,  # refined by predicted_usage below
    ("copyright", "copyright"): Category.COPYRIGHT,
    ("copyright", "p2p"): Category.COPYRIGHT,
    ("copyright", "cyberlocker"): Category.COPYRIGHT,
    ("copyright", "ugc_platform"): Category.COPYRIGHT,
    ("copyright", "link_site"): Category.COPYRIGHT,
    ("copyright", "usenet"): Category.COPYRIGHT,
    ("infrastructure", "botnet"): Category.MALWARE,
    ("infrastructure", "compromised_server"): Category.VULNERABLE_SERVICE,
    ("reputation", "blocklist"): Category.NETWORK_ABUSE,  # refined by threat_type below
    ("reputation", "threat_intelligence"): Category.NETWORK_ABUSE,
    ("vulnerability", "cve"): Category.VULNERABLE_SERVICE,
    ("vulnerability", "open_service"): Category.VULNERABLE_SERVICE,
    ("vulnerability", "misconfiguration"): Category.VULNERABLE_SERVICE,
}

# Words in a reputation report's threat_type, or a suspicious registration's predicted_usage.
_THREAT_WORDS: tuple[tuple[str, Category], ...] = (
    ("phish", Category.PHISHING),
    ("spam", Category.SPAM),
    ("malware", Category.MALWARE),
    ("botnet", Category.MALWARE),
    ("command_and_control", Category.MALWARE),
    ("c2", Category.MALWARE),
    ("ddos", Category.DENIAL_OF_SERVICE),
    ("fraud", Category.FRAUD),
)
_CHILD_ABUSE = frozenset({"csam", "csem"})
_MAX_PROBLEMS = 20


def recognise(message: email.message.EmailMessage | None, raw: bytes) -> bool:
    doc = _json.peek(message, raw)
    return doc is not None and str(doc.get("xarf_version", "")).startswith("4")


def parse(message: email.message.EmailMessage | None, raw: bytes, limits: Limits) -> ParsedReport:
    found = _json.document(message, raw, limits)
    if found is None:
        raise NotThisFormat("no JSON document")
    doc, where = found
    if not isinstance(doc, dict) or not str(doc.get("xarf_version", "")).startswith("4"):
        raise NotThisFormat("not an XARF v4 report")
    problems = validate(doc)
    if problems:
        raise MalformedReport(
            f"{where} is not a valid XARF v4 report: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            problems,
        )
    xarf_category, xarf_type = str(doc["category"]), str(doc["type"])
    evidence = _evidence_without_payloads(bounded_json(doc, limits.max_json_nodes))
    source = refang(str(doc["source_identifier"]).strip())
    addresses: list[str] = []
    urls: list[str] = []
    domains: list[str] = []
    ip = canonical_ip(source)
    if ip:
        addresses.append(ip)
    elif "://" in source:
        urls.append(source)
    elif is_hostname(source):
        domains.append(source.lower())
    for key in ("url", "infringing_url"):  # the reported content itself, never a victim's URL
        value = doc.get(key)
        if isinstance(value, str) and "://" in value and value not in urls:
            urls.append(refang(value))
    named = doc.get("domain")
    if isinstance(named, str) and is_hostname(named) and named.lower() not in domains:
        domains.append(named.lower())
    port = doc.get("source_port") or doc.get("service_port")
    description = doc.get("description")
    finding = Finding(
        category=_category(doc, xarf_category, xarf_type),
        addresses=tuple(addresses),
        urls=tuple(urls),
        domains=tuple(domains),
        event_time=_mail.parse_datetime(doc.get("timestamp")),
        port=port if isinstance(port, int) and not isinstance(port, bool) else None,
        description=description if isinstance(description, str) else f"{xarf_category}/{xarf_type}",
        evidence=evidence,
        kind=f"{xarf_category}/{xarf_type}",
    )
    reporter = doc["reporter"]
    fields: dict[str, Any] = {
        "xarf_version": doc["xarf_version"],
        "report_id": doc["report_id"],
        "xarf_category": xarf_category,
        "xarf_type": xarf_type,
        "sender": bounded_json(doc["sender"], 100),
        "reporter_domain": reporter.get("domain", ""),
    }
    subject, message_id, received = "", str(doc["report_id"]), None
    if message is not None:
        subject = _mail.header(message, "Subject")
        message_id = _mail.message_id(message) or message_id
        received = _mail.parse_datetime(_mail.header(message, "Date"))
        fields["carried_in"] = where
    return ParsedReport(
        format=ReportFormat.XARF_V4,
        reporter_name=str(reporter.get("org", "")),
        reporter_email=str(reporter.get("contact", "")),
        subject=subject,
        message_id=message_id,
        received_time=received,
        findings=(finding,),
        fields=fields,
    )


def validate(doc: Any) -> list[str]:
    """Every reason ``doc`` fails the XARF v4 master schema, as "path: message" lines."""
    category, kind = (
        (doc.get("category"), doc.get("type")) if isinstance(doc, dict) else (None, None)
    )
    if (
        isinstance(category, str)
        and isinstance(kind, str)
        and (category, kind) not in CATEGORY_BY_TYPE
    ):
        known = sorted({c for c, _ in CATEGORY_BY_TYPE})
        if category in known:
            types = sorted(t for c, t in CATEGORY_BY_TYPE if c == category)
            listed = ", ".join(types)
            return [f"type: {kind!r} is not an XARF v4 type of category {category!r} ({listed})"]
    problems: list[str] = []
    errors = sorted(
        _validator().iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    for error in errors[:_MAX_PROBLEMS]:
        path = "/".join(str(p) for p in error.absolute_path) or "(report)"
        message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
        problems.append(f"{path}: {message}")
    if len(errors) > _MAX_PROBLEMS:
        problems.append(f"... {len(errors) - _MAX_PROBLEMS} more")
    return problems


@functools.cache
def _validator() -> Draft202012Validator:
    root = resources.files(__package__).joinpath("schemas", "xarf-v4")
    documents: list[dict[str, Any]] = []
    for folder in (root, root.joinpath("types")):
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json"):
                documents.append(json.loads(entry.read_text(encoding="utf-8")))
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in documents
    )
    master = next(d for d in documents if d["$id"].endswith("/xarf-v4-master.json"))
    return Draft202012Validator(
        master, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _category(doc: dict[str, Any], xarf_category: str, xarf_type: str) -> Category | None:
    base = CATEGORY_BY_TYPE.get((xarf_category, xarf_type))
    hints: list[str] = []
    if xarf_category == "reputation":
        hints = [str(doc.get("threat_type", ""))]
    elif xarf_type == "suspicious_registration":
        usage = doc.get("predicted_usage")
        hints = [str(u) for u in usage] if isinstance(usage, list) else []
    for hint in hints:
        for word, category in _THREAT_WORDS:
            if word in hint.lower():
                return category
    return base


def _evidence_without_payloads(doc: Any) -> Any:
    if not isinstance(doc, dict) or not isinstance(doc.get("evidence"), list):
        return doc
    child_abuse = doc.get("type") in _CHILD_ABUSE
    items = []
    for item in doc["evidence"]:
        if isinstance(item, dict):
            kept = {k: v for k, v in item.items() if k != "payload"}
            payload = item.get("payload")
            if isinstance(payload, str):
                kept["payload_chars"] = len(payload)
                if child_abuse:
                    kept["payload_withheld"] = "child-abuse material is never copied or shown"
            items.append(kept)
    return {**doc, "evidence": items}
