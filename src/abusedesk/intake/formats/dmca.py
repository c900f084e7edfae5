"""DMCA notices of claimed infringement: ACNS XML blocks and free-text notices.

Rights holders' agents (IP-Echelon, MarkMonitor, ...) embed an ACNS block,
``<Infringement xmlns="http://www.acns.net/ACNS">`` with Case, Complainant, Service_Provider,
Source (IP, port, time, URL...) and Content (title, file name, hash...), in the mail's text and
often again as an XML attachment. It is parsed with defusedxml: a DTD, entity declarations or
external references are refused, so entity expansion cannot blow up.

Every notice, ACNS or not, is checked for the six elements a notice must carry under
17 U.S.C. 512(c)(3)(A) (``ELEMENTS``); ``ParsedReport.missing`` names those absent and
``notice_complete`` is True only when none is. A notice that lacks some but identifies the work,
the material and a way to reach the complainant must not be ignored: the provider has to reach
out for the rest (512(c)(3)(B)(ii)), so ``fields["ask_for_rest"]`` is set.

The checks read the notice as a person would skim it, with patterns; they say whether a
statement is there, not whether it is true or sufficient. Staff decide.
"""

from __future__ import annotations

import email.message
import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET

from abusedesk.intake.formats import _mail
from abusedesk.intake.formats._extract import (
    canonical_ip,
    find_emails,
    is_hostname,
    refang,
    resources,
    unique,
)
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

ACNS_NAMESPACE = "http://www.acns.net/ACNS"

# The six elements of 17 U.S.C. 512(c)(3)(A), by the names ParsedReport.missing uses.
ELEMENTS: tuple[tuple[str, str], ...] = (
    ("signature", "(i) a physical or electronic signature of a person authorized to act"),
    ("work", "(ii) identification of the copyrighted work claimed to be infringed"),
    ("material", "(iii) identification of the infringing material and where to find it"),
    ("contact", "(iv) information to contact the complaining party"),
    ("good_faith", "(v) a statement of good-faith belief that the use is not authorized"),
    (
        "accuracy_authority",
        "(vi) a statement that the notice is accurate and, under penalty of perjury, that the "
        "complaining party is authorized to act for the owner",
    ),
)
# What 512(c)(3)(B)(ii) needs before the provider must ask for the rest.
_SUBSTANTIAL = frozenset({"work", "material", "contact"})

_ACNS_BLOCK = re.compile(r"(?s)(?:<\?xml[^>]{0,200}\?>\s*)?<Infringement\b.*?</Infringement\s*>")
_STRONG_MARKERS = re.compile(
    r"(?i)\bDMCA\b|digital\s+millennium\s+copyright\s+act|\b512\s*\(c\)|"
    r"notice\s+of\s+(?:claimed\s+)?(?:copyright\s+)?infringement|\bACNS\b"
)
_PGP_SIGNED = re.compile(r"-----BEGIN PGP SIGNED MESSAGE-----.*-----BEGIN PGP SIGNATURE-----", re.S)
_S_SLASH = re.compile(r"(?im)^\s*/s/\s*\S")
_SIGNED_LINE = re.compile(
    r"(?im)^\s*(?:electronically\s+)?(?:signed|signature)\s*(?:by)?\s*[:\-]\s*\S"
)
_VALEDICTION = re.compile(
    r"(?i)^\s*(?:sincerely|regards|best\s+regards|kind\s+regards|warm\s+regards|respectfully|"
    r"yours\s+(?:truly|faithfully|sincerely)|thank\s+you|thanks|cordially|best)\b"
    r"[\w ]{0,20}[,.!]?\s*$"
)
_NAME_LINE = re.compile(r"^\s*[A-Z][\w'.-]+(?:\s+[A-Z][\w'.-]*){1,3}\s*$")
_WORK = re.compile(
    r"(?i)infringed\s+works?|copyrighted\s+(?:works?|materials?|content|images?|photo(?:graph)?s?|"
    r"videos?|songs?|books?|software|films?|movies?|articles?|text)|original\s+works?|"
    r"works?\s+(?:infringed|in\s+question)|title\s+in\s+question|^\s*(?:work|title)\s*:|"
    r"\b(?:my|our)\s+(?:own\s+)?(?:photo(?:graph)?s?|images?|pictures?|songs?|books?|articles?|"
    r"videos?|films?|movies?|software|artworks?|works?|designs?|recordings?)\b",
    re.M,
)
_LOCATION_WORDS = re.compile(
    r"(?i)infring|locat|found|available|hosted|\burls?\b|links?\b|ip\s+address|following|"
    r"address(?:es)?\s*:|torrent|download|cop(?:y|ied|ies)|post|upload|publish|appear|display|"
    r"pages?\b|sites?\b|your\s+(?:server|network)"
)
_PHONE = re.compile(r"(?i)(?:phone|tel|telephone|fax|mobile)\b[^\n]{0,10}?\+?\d[\d\s().-]{6,}\d")
_POSTAL = re.compile(r"(?im)^\s*(?:address|mailing\s+address|postal\s+address)\s*:\s*\S")
_GOOD_FAITH = re.compile(r"(?i)good[\s-]*faith\s+belie[fv]")
_ACCURATE = re.compile(r"(?i)\baccura(?:te|cy)\b|\btrue\s+and\s+correct\b")
_PERJURY = re.compile(r"(?i)penalty\s+of\s+perjury")
_AUTHORITY = re.compile(
    r"(?i)authori[sz]ed\s+to\s+act|\b(?:i\s+am|we\s+are)\s+the\s+(?:copyright\s+)?owners?\b|"
    r"owner\s+of\s+(?:an?\s+|the\s+)?exclusive\s+rights?"
)
_NOREPLY = re.compile(r"(?i)^(?:no-?reply|do-?not-?reply|donotreply|mailer-daemon)@")
_MAX_XML_CHARS = 1024 * 1024


def recognise(message: email.message.EmailMessage | None, raw: bytes) -> bool:
    if message is None:
        return False
    try:
        if _acns_xml(message, Limits()) is not None:
            return True
        text, _ = _mail.body_text(message, Limits())
    except MalformedReport:  # an ACNS block we refuse to read: ours to report
        return True
    except Exception:
        return False
    subject = _mail.header(message, "Subject")
    return looks_like_notice(f"{subject}\n{text}")


def looks_like_notice(text: str) -> bool:
    """True for a text that presents itself as a DMCA notice."""
    if _STRONG_MARKERS.search(text):
        return True
    lowered = text.lower()
    return (
        "copyright" in lowered
        and "infring" in lowered
        and bool(_GOOD_FAITH.search(text) or _PERJURY.search(text))
    )


def parse(message: email.message.EmailMessage | None, raw: bytes, limits: Limits) -> ParsedReport:
    if message is None:
        raise NotThisFormat("a DMCA notice arrives as a MIME message")
    xml = _acns_xml(message, limits)
    text, _ = _mail.body_text(message, limits)
    subject = _mail.header(message, "Subject")
    name, addr = _mail.address(message, "From")
    acns = read_acns(xml, limits) if xml is not None else None
    if acns is None and not looks_like_notice(f"{subject}\n{text}"):
        raise NotThisFormat("neither an ACNS block nor a DMCA notice")
    # The text to check is what the sender wrote, without the machine-readable block.
    notice_text = _ACNS_BLOCK.sub(" ", text)
    sender_contact = addr if addr and not _NOREPLY.match(addr) else ""
    missing, details = check_notice(notice_text, acns, sender_contact)
    fields: dict[str, Any] = {"elements": details}
    if acns is not None:
        finding = _acns_finding(acns)
        fields["acns"] = acns
        fields.update(_acns_summary(acns))
        report_format = ReportFormat.DMCA_ACNS
    else:
        addresses, urls, domains, emails = resources(notice_text)
        finding = Finding(
            category=Category.COPYRIGHT,
            addresses=tuple(addresses),
            urls=tuple(urls),
            domains=tuple(domains),
            description=notice_text.strip()[:4000],
            evidence={"emails": emails},
            kind="dmca_notice",
        )
        report_format = ReportFormat.DMCA_TEXT
    fields["ask_for_rest"] = bool(missing) and not (_SUBSTANTIAL & set(missing))
    return ParsedReport(
        format=report_format,
        reporter_name=name,
        reporter_email=addr,
        subject=subject,
        message_id=_mail.message_id(message),
        received_time=_mail.parse_datetime(_mail.header(message, "Date")),
        findings=(finding,),
        notice_complete=not missing,
        missing=missing,
        fields=fields,
    )


def check_notice(
    text: str, acns: dict[str, Any] | None = None, sender_contact: str = ""
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Which of the six 512(c)(3)(A) elements are missing, and what was found for each.

    ``text`` is the notice as written; ``acns`` the ACNS block as ``read_acns`` returns it;
    ``sender_contact`` an address the notice came from, which counts as contact information.
    """
    clean = refang(text)
    found: dict[str, Any] = {}
    complainant = _dict(acns.get("Complainant")) if acns else {}
    source = _dict(acns.get("Source")) if acns else {}
    items = _items(acns)

    found["signature"] = _signature(clean)
    titles = [t for t in (_str(i.get("Title")) for i in items) if t]
    work_match = _WORK.search(clean)
    found["work"] = titles[0] if titles else (work_match.group(0).strip() if work_match else "")

    places = [_str(source.get("IP_Address")), _str(source.get("URL_Base"))]
    located = [v for v in (*places, *(_str(i.get("URL")) for i in items)) if v]
    found["material"] = located[0] if located else _located_material(clean)

    contacts = [
        _str(complainant.get(k)) for k in ("Email", "Phone", "Address") if _str(complainant.get(k))
    ]
    contacts += find_emails(clean)[:1]
    phone = _PHONE.search(clean)
    if phone:
        contacts.append(phone.group(0).strip())
    if _POSTAL.search(clean):
        contacts.append("postal address")
    if sender_contact:
        contacts.append(sender_contact)
    found["contact"] = contacts[0] if contacts else ""

    found["good_faith"] = bool(_GOOD_FAITH.search(clean))
    parts = {
        "accuracy": bool(_ACCURATE.search(clean)),
        "penalty_of_perjury": bool(_PERJURY.search(clean)),
        "authority": bool(_AUTHORITY.search(clean)),
    }
    found["accuracy_authority"] = parts
    missing = tuple(
        name
        for name, _ in ELEMENTS
        if not (all(found[name].values()) if isinstance(found[name], dict) else found[name])
    )
    return missing, found


def read_acns(xml: str, limits: Limits) -> dict[str, Any]:
    """The ACNS block as nested dicts (namespace dropped, repeated elements as lists)."""
    try:
        root = SafeET.fromstring(xml, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise MalformedReport(
            f"the ACNS XML declares a DTD, entities or external references ({exc}); refused"
        ) from exc
    except (ParseError, ValueError) as exc:
        raise MalformedReport(f"the ACNS XML is not well-formed: {exc}") from exc
    if _local(root.tag) != "Infringement":
        raise MalformedReport(f"the ACNS XML's root is {_local(root.tag)!r}, not Infringement")
    budget = [limits.max_json_nodes]
    value = _element(root, budget, 0)
    return value if isinstance(value, dict) else {}


def _acns_xml(message: email.message.Message, limits: Limits) -> str | None:
    candidates: list[str] = []
    for item in _mail.walk(message, limits):
        part = item.part
        if item.in_attached_message or part.is_multipart():
            continue
        ctype = _mail.content_type(part)
        if ctype in ("application/xml", "text/xml") or _mail.filename(part).lower().endswith(
            ".xml"
        ):
            candidates.insert(0, _mail.part_text(part, _MAX_XML_CHARS))  # attachments first
        elif ctype.startswith("text/"):
            candidates.append(_mail.part_text(part, _MAX_XML_CHARS))
    for text in candidates:
        if "<Infringement" in text and ACNS_NAMESPACE in text:
            if re.search(r"<!(?:DOCTYPE|ENTITY)", text):
                # Entities could expand without bound: a notice that declares any is refused.
                raise MalformedReport("the ACNS XML declares a DTD or entities; refused")
            match = _ACNS_BLOCK.search(text)
            if match:
                block = match.group(0)
                # A <?xml?> declaration is only allowed at the very start of a document.
                return re.sub(r"^<\?xml[^>]*\?>\s*", "", block)
    return None


def _element(node: Element, budget: list[int], depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise LimitExceeded("the ACNS XML has too many elements")
    if depth > 32:
        raise LimitExceeded("the ACNS XML nests too deeply")
    children = list(node)
    attributes = {f"@{_local(k)}": v for k, v in node.attrib.items() if "schemaLocation" not in k}
    if not children:
        text = " ".join((node.text or "").split())
        if attributes:
            return {**attributes, "#text": text} if text else attributes
        return text
    out: dict[str, Any] = dict(attributes)
    for child in children:
        key = _local(child.tag)
        value = _element(child, budget, depth + 1)
        if key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _items(acns: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not acns:
        return []
    content = acns.get("Content")
    if not isinstance(content, dict):
        return []
    items = content.get("Item")
    if isinstance(items, dict):
        return [items]
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("#text", "")
    return value.strip() if isinstance(value, str) else ""


def _acns_finding(acns: dict[str, Any]) -> Finding:
    source = _dict(acns.get("Source"))
    items = _items(acns)
    address = canonical_ip(_str(source.get("IP_Address")))
    urls = unique(
        refang(u)
        for u in [_str(source.get("URL_Base"))] + [_str(i.get("URL")) for i in items]
        if "://" in u
    )
    dns_name = _str(source.get("DNS_Name")).lower()
    port_text = _str(source.get("Port"))
    first = items[0] if items else {}
    title, file_name = _str(first.get("Title")), _str(first.get("FileName"))
    description = title + (f" ({file_name})" if file_name and file_name != title else "")
    return Finding(
        category=Category.COPYRIGHT,
        addresses=(address,) if address else (),
        urls=tuple(urls),
        domains=(dns_name,) if is_hostname(dns_name) else (),
        event_time=_mail.parse_datetime(
            _str(source.get("TimeStamp")) or _str(first.get("TimeStamp"))
        ),
        port=int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else None,
        description=description or "ACNS notice of claimed infringement",
        evidence={"source": source, "content": items},
        kind=(_str(source.get("Type")) or "acns").lower(),
    )


def _acns_summary(acns: dict[str, Any]) -> dict[str, Any]:
    case = _dict(acns.get("Case"))
    complainant = _dict(acns.get("Complainant"))
    return {
        "case_id": _str(case.get("ID")),
        "complainant": {
            k.lower(): _str(complainant.get(k))
            for k in ("Entity", "Contact", "Email", "Phone", "Address")
            if _str(complainant.get(k))
        },
    }


def _signature(text: str) -> str:
    if _PGP_SIGNED.search(text):
        return "PGP signature"
    for pattern, label in ((_S_SLASH, "/s/ signature"), (_SIGNED_LINE, "signature line")):
        match = pattern.search(text)
        if match:
            return label
    lines = [line for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if _VALEDICTION.match(line):
            for following in lines[index + 1 : index + 4]:
                if _NAME_LINE.match(following):
                    return following.strip()
    return ""


def _located_material(text: str) -> str:
    """A URL or IP address the notice points at as the infringing material's location."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        addresses, urls, _domains, _emails = resources(line)
        for value in urls + addresses:
            context = " ".join(lines[max(0, index - 2) : index + 1])
            alone = line.strip().strip("<>").rstrip(".,;") == value
            if alone or _LOCATION_WORDS.search(context):
                return value
    return ""
