"""The errors a flow decoder raises, each with a ``kind`` that a collector counts by.

Drawn as the intake formats draw theirs::

    AbuseDeskError                  (abusedesk.errors)
     └── DecodeError                a datagram, or part of one, could not be decoded
          ├── Truncated             the data ends before a header, set, sample or record does
          ├── BadVersion            not a version this decoder reads (or not a flow datagram)
          ├── UnknownTemplate       a NetFlow v9 / IPFIX data set whose template is not known
          └── Malformed             the structure is there but lies: lengths, counts, ids

``Truncated``, ``BadVersion`` and ``Malformed`` are raised: the datagram is rejected whole,
and nothing it would have produced is returned (templates it defined before the fault stay
learnt, since they were valid). ``UnknownTemplate`` is never raised for a datagram: the
other sets of the same datagram still decode, and the data set is held for a later retry
(see :mod:`abusedesk.traffic.decode.templates`). It is reported in ``DecodeResult.problems``
so that it is counted the same way. No other exception (``IndexError``, ``struct.error``,
``ValueError``) leaves a decoder; the fuzz tests hold that.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from abusedesk.errors import AbuseDeskError


class DecodeErrorKind(StrEnum):
    """Label values for a collector's decode-error counter."""

    TRUNCATED = "truncated"
    BAD_VERSION = "bad_version"
    UNKNOWN_TEMPLATE = "unknown_template"
    MALFORMED = "malformed"


class DecodeError(AbuseDeskError):
    """A datagram, or part of one, could not be decoded; ``kind`` says how."""

    kind: ClassVar[DecodeErrorKind] = DecodeErrorKind.MALFORMED


class Truncated(DecodeError):
    kind = DecodeErrorKind.TRUNCATED


class BadVersion(DecodeError):
    kind = DecodeErrorKind.BAD_VERSION


class Malformed(DecodeError):
    kind = DecodeErrorKind.MALFORMED


class UnknownTemplate(DecodeError):
    """A data set arrived before (or after the expiry of) its template.

    ``held`` says whether the set was kept for a retry when the template arrives, or dropped
    because the exporter's hold buffer was full.
    """

    kind = DecodeErrorKind.UNKNOWN_TEMPLATE

    def __init__(self, message: str, template_id: int, domain: int, held: bool) -> None:
        super().__init__(message)
        self.template_id = template_id
        self.domain = domain
        self.held = held
