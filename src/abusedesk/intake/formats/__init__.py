"""Report formats: one pure module per format, one interface, bounded parsing, typed errors.

``detect_and_parse(raw)`` reads any report: it parses the MIME message once, asks each format's
``recognise`` in turn, most specific first, and hands the message to the first that claims it.
A parser that looks closer and declines (``NotThisFormat``) passes it on; one that finds its
format broken or too large raises, and that error is the outcome. A person's complaint is the
fallback. Nothing here does I/O, reads a clock or touches the database: bytes in, values out.

Modules, in the order they are asked: ``xarf_v4``, ``xarf_v3`` (JSON, bare or as a mail part),
``spamcop``, ``arf``, ``xarf_legacy``, ``shadowserver``, ``dmca`` (ACNS and text notices),
``cleanmx``, ``human``. See docs/intake-formats.md.
"""

from __future__ import annotations

import email.message
from types import ModuleType

from abusedesk.intake.formats import (
    _json,
    _mail,
    arf,
    cleanmx,
    dmca,
    human,
    shadowserver,
    spamcop,
    xarf_legacy,
    xarf_v3,
    xarf_v4,
)
from abusedesk.intake.formats.base import (
    Finding,
    FormatParser,
    LimitExceeded,
    Limits,
    MalformedReport,
    NotThisFormat,
    ParsedReport,
    ParseError,
    ReportFormat,
)

__all__ = [
    "PARSERS",
    "Finding",
    "FormatParser",
    "LimitExceeded",
    "Limits",
    "MalformedReport",
    "NotThisFormat",
    "ParseError",
    "ParsedReport",
    "ReportFormat",
    "detect_and_parse",
]

# Most specific first. SpamCop before ARF: SpamCop also sends ARF, and says more in its body.
# DMCA after the feeds: an X-ARF or Shadowserver mail may mention copyright in passing.
PARSERS: tuple[ModuleType, ...] = (
    xarf_v4,
    xarf_v3,
    spamcop,
    arf,
    xarf_legacy,
    shadowserver,
    dmca,
    cleanmx,
    human,
)


def detect_and_parse(raw: bytes, limits: Limits = Limits()) -> ParsedReport:
    """Recognise the format of ``raw`` and parse it.

    Raises ``LimitExceeded`` when the input or a part of it is too large, ``MalformedReport``
    when it is recognisably a format but broken (or neither mail nor text). Never raises
    anything else: an unexpected failure inside a parser is reported as ``MalformedReport``.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MalformedReport(f"a report is bytes, not {type(raw).__name__}")
    data = bytes(raw)
    if len(data) > limits.max_message_bytes:
        raise LimitExceeded(
            f"the report is {len(data)} bytes; at most {limits.max_message_bytes} are read"
        )
    if not data.strip():
        raise MalformedReport("the report is empty")
    message: email.message.EmailMessage | None = None
    if _json.looks_like_json(data):
        _json.loads(data, "the report")  # JSON that does not parse is broken, not a complaint
    else:
        message = _mail.parse_message(data)
    result = _first_parser(message, data, limits)
    if result is None and message is None:
        # JSON-looking input that is no XARF: read it as text, like any other complaint.
        result = _first_parser(_mail.parse_message(data), data, limits)
    if result is None:
        raise MalformedReport("no format recognised the report")
    return result


def _first_parser(
    message: email.message.EmailMessage | None, raw: bytes, limits: Limits
) -> ParsedReport | None:
    for module in PARSERS:
        name = module.__name__.rsplit(".", 1)[-1]
        try:
            if not module.recognise(message, raw):
                continue
            result: ParsedReport = module.parse(message, raw, limits)
        except NotThisFormat:
            continue
        except ParseError:
            raise
        except RecursionError as exc:
            raise MalformedReport(f"{name}: the report nests too deeply to read") from exc
        except Exception as exc:  # a parser bug must not stop the listener: report, keep raw
            raise MalformedReport(
                f"the {name} parser failed on this report ({type(exc).__name__}: {exc})"
            ) from exc
        if len(result.findings) > limits.max_findings:
            raise LimitExceeded(
                f"the report has {len(result.findings)} findings; at most {limits.max_findings}"
            )
        return result
    return None
