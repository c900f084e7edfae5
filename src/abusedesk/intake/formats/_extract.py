"""Finding addresses, URLs, domains and e-mail addresses in free text, and making HTML text.

Complainants defang what they report (``hxxp://bad[.]example``) so that nobody clicks it; that
is undone first. HTML is turned into text by the standard library's tokenizer: script, style and
other active content are dropped, nothing is executed, and only http(s)/ftp link targets are kept.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from html.parser import HTMLParser
from typing import Any

from abusedesk.intake.formats.base import LimitExceeded

_Replacement = str | Callable[[re.Match[str]], str]
_REFANG: list[tuple[re.Pattern[str], _Replacement]] = [
    (re.compile(r"\bh(?:xx|\*\*|XX)p(s?)\b", re.I), r"http\1"),
    (re.compile(r"\bf(?:xx|XX)p\b", re.I), "ftp"),
    (re.compile(r"\[(?:\.|dot)\]|\((?:\.|dot)\)|\{(?:\.|dot)\}", re.I), "."),
    (re.compile(r"\[:\]|\[:\/\/\]"), lambda m: m.group(0)[1:-1]),
]


def refang(text: str) -> str:
    """Undo the usual defanging: hxxp, [.], (.), {.}, [dot], [:], [://]."""
    for pattern, replacement in _REFANG:
        text = pattern.sub(replacement, text)
    return text


_URL = re.compile(
    r"""(?i)\b(?:https?|ftps?)://(?:\[[0-9a-f:.]+\]|[^\s<>"'`{}|\\^\[\]/?#]+)[^\s<>"'`{}|\\^]*"""
)
_TRAILING = ".,;:!?'\"*>"
_IPV4 = re.compile(r"(?<![0-9.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])\[?([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3})")
_EMAIL = re.compile(r"(?i)\b[a-z0-9._%+-]{1,64}@(?:[a-z0-9-]{1,63}\.)+[a-z]{2,63}\b")
_DOMAIN = re.compile(
    r"(?i)(?<![\w.@/-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62})"
    r"(?![\w@-]|\.\w)"
)

# Top-level domains accepted for a bare name in free text. Every two-letter (country) TLD is
# accepted; longer ones only from this list, so that "index.php" or "report.pdf" are not taken
# for hosts. The reserved test names are here because reports redact with them.
_TLD_TEXT = """
    com net org info biz edu gov mil int arpa name pro mobi asia tel travel jobs cat coop aero
    museum xxx app dev io xyz online site top club shop store tech cloud live blog host hosting
    link click space website digital email services support agency world today network systems
    solutions center company group media news life fun win bid loan men work download stream icu
    vip buzz monster rest cyou sbs cfd bond quest finance bank money example test invalid
    localhost local lan internal tld
"""
_GENERIC_TLDS = frozenset(_TLD_TEXT.split())


_DOTTED_QUAD = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)


def canonical_ip(text: str) -> str | None:
    """The canonical text of an IP address, or None when ``text`` is not one."""
    if _DOTTED_QUAD.fullmatch(text):
        # Already canonical IPv4 (no leading zeros): the common case in feeds, and ten times
        # faster than building an ipaddress object for every row.
        return text
    candidate = text.strip().strip("[]")
    if "%" in candidate:
        candidate = candidate.split("%", 1)[0]
    if ":" in candidate:
        # IPv6 through the C library: RFC 5952 text as ipaddress writes it, five times faster
        # (a feed may be all IPv6). Only an address ending in dotted IPv4 is written otherwise
        # by inet_ntop (``::ffff:1.2.3.4``), so ipaddress has the last word on those.
        try:
            fast = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, candidate))
        except (OSError, ValueError):
            fast = "."  # what the C library refuses, ipaddress judges
        if "." not in fast:
            return fast
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _usable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # Addresses that can never locate a customer's server.
    return not (ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local)


def find_urls(text: str) -> list[str]:
    out: list[str] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        while url.endswith(")") and url.count(")") > url.count("("):
            url = url[:-1].rstrip(_TRAILING)
        if len(url) > 8:
            out.append(url[:2048])
    return unique(out)


def find_ips(text: str) -> list[str]:
    out: list[str] = []
    for match in _IPV4.finditer(text):
        try:
            v4 = ipaddress.IPv4Address(match.group(0))
        except ValueError:
            continue
        if _usable(v4):
            out.append(str(v4))
    if ":" in text:
        for match in _IPV6.finditer(text):
            candidate = match.group(1)
            if candidate.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", candidate):
                continue
            try:
                v6 = ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            if _usable(v6):
                out.append(str(v6))
    return unique(out)


def find_emails(text: str) -> list[str]:
    return unique(m.group(0) for m in _EMAIL.finditer(text))


def is_hostname(name: str) -> bool:
    """True for a plausible DNS host name (not an IP address)."""
    if not name or len(name) > 253 or canonical_ip(name) is not None:
        return False
    match = _DOMAIN.fullmatch(name)
    return bool(match)


def find_domains(text: str) -> list[str]:
    out: list[str] = []
    for match in _DOMAIN.finditer(text):
        name = match.group(1).lower()
        tld = name.rsplit(".", 1)[1]
        if not tld.isalpha():
            continue
        if len(tld) == 2 or tld in _GENERIC_TLDS:
            out.append(name)
    return unique(out)


def host_of(url: str) -> str:
    """The host of a URL, lower-case, without brackets or port ("" when there is none)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    rest = re.split(r"[/?#]", rest, maxsplit=1)[0]
    rest = rest.rsplit("@", 1)[-1]
    if rest.startswith("["):
        return rest[1 : rest.find("]")] if "]" in rest else rest[1:]
    return rest.split(":", 1)[0].rstrip(".").lower()


def resources(text: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """(addresses, urls, domains, emails) in ``text``, defanging undone.

    URLs are taken first and cut out of the text, and so are e-mail addresses, so that the
    hosts in them are not counted again as bare domains or addresses.
    """
    clean = refang(text)
    urls = find_urls(clean)
    rest = _URL.sub(" ", clean)
    emails = find_emails(rest)
    rest = _EMAIL.sub(" ", rest)
    return find_ips(rest), urls, find_domains(rest), emails


def unique(items: Iterable[str]) -> list[str]:
    """Items in first-seen order, without repeats or empty strings."""
    seen: dict[str, None] = {}
    for item in items:
        if item and item not in seen:
            seen[item] = None
    return list(seen)


_DROP = frozenset(
    {"script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "math", "head"}
)
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_BLOCK = frozenset(
    {"p", "div", "br", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "hr"}
)


class _TextMaker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.links: list[str] = []
        self.dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP and tag not in _VOID:
            self.dropping += 1
            return
        if tag in _BLOCK:
            self.chunks.append("\n")
        if tag == "a" and not self.dropping:
            for name, value in attrs:
                if name == "href" and value and re.match(r"(?i)\s*(https?|ftps?)://", value):
                    self.links.append(value.strip())

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP and tag not in _VOID:
            self.dropping = max(0, self.dropping - 1)
        elif tag in _BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """Readable text of an HTML document, with its http(s) link targets listed after it.

    Scripts, styles, iframes, objects and other active content are dropped with what they
    contain; event-handler attributes and ``javascript:`` links are never copied. Nothing is
    fetched or run.
    """
    maker = _TextMaker()
    try:
        maker.feed(html)
        maker.close()
        text = "".join(maker.chunks)
        links = maker.links
    except Exception:  # the tokenizer is lenient, but never let markup stop a complaint
        text = re.sub(r"<[^>]*>", " ", re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", html))
        links = []
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    if links:
        text += "\n\nLinks:\n" + "\n".join(unique(links))
    return text


def bounded_json(value: Any, budget: int) -> Any:
    """A copy of ``value`` made of JSON types only, refusing more than ``budget`` nodes.

    YAML aliases and XML documents can describe far more nodes than their size suggests; a
    document that big is refused instead of being copied into a report's evidence.
    """
    count = 0

    def copy(node: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > budget:
            raise LimitExceeded(f"the document has more than {budget} values")
        if depth > 64:
            raise LimitExceeded("the document nests more than 64 levels deep")
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if isinstance(node, dict):
            return {str(k): copy(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [copy(v, depth + 1) for v in node]
        return str(node)

    return copy(value, 0)
