"""Classification: which AUP category a finding is, with a confidence and the reason. Pure.

Rules, first match wins:

1. The category the format itself gives (see docs/intake-formats.md, "Categories").
2. DMCA notices (ACNS or text): copyright.
3. ARF feedback types: ``abuse`` spam, ``fraud`` fraud, ``virus`` malware; ``auth-failure``,
   ``not-spam``, ``opt-out``, ``unsubscribe`` and ``dmarc`` reports say nothing against the
   sender: no case, the report is only kept.
4. Shadowserver report types the parser left without a category: ``scan*`` vulnerable_service
   (R9), ``event4_sinkhole*`` malware; any other (amplification victims, population counts)
   is informational: no case.
5. Anything else that carries no category (a person's complaint, SpamCop summaries, ARF
   ``other``): keyword rules on the subject and text, in this order: phishing, malware,
   copyright, spam, threats_harassment; none matching: unlawful_content, the AUP's catch-all
   for content a third party objects to, at low confidence, for staff to look at (R4).

Deliberately no keyword rule for csam or terrorist content: those disconnect at once, and a
word in a stranger's mail must not do that; staff reclassify.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from abusedesk.intake.formats.base import Finding, ReportFormat
from abusedesk.policy.choices import Category, Severity

_ARF_KINDS = {"abuse": Category.SPAM, "fraud": Category.FRAUD, "virus": Category.MALWARE}
_ARF_NO_CASE = frozenset({"auth-failure", "not-spam", "opt-out", "unsubscribe", "dmarc"})

_KEYWORDS: tuple[tuple[Category, re.Pattern[str]], ...] = (
    (
        Category.PHISHING,
        re.compile(
            r"phish|credential|fake (?:login|bank|sign[- ]?in)|imitat\w* (?:my|our|a) bank"
            r"|steal\w* password|account verification",
            re.IGNORECASE,
        ),
    ),
    (
        Category.MALWARE,
        re.compile(
            r"malware|virus|trojan|ransomware|botnet|\bc2\b|command and control|infected"
            r"|drive-by|exploit kit|\bmalicious (?:file|download|script)",
            re.IGNORECASE,
        ),
    ),
    (
        Category.COPYRIGHT,
        re.compile(r"copyright|dmca|infring|pirat|trademark|counterfeit", re.IGNORECASE),
    ),
    (
        Category.SPAM,
        re.compile(
            r"\bspam|unsolicited|bulk (?:e-?)?mail|junk mail|newsletter i never|unsubscribe",
            re.IGNORECASE,
        ),
    ),
    (
        Category.THREATS_HARASSMENT,
        re.compile(
            r"threat|harass|stalk|\bdox|extort|blackmail|kill (?:you|me|him|her)|intimidat",
            re.IGNORECASE,
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Classification:
    category: Category | None  # None: no case, the report is only kept
    severity: Severity | None  # None: the policy's severity for the category
    confidence: float  # 0..1: how sure the rule is (format fields high, keywords lower)
    reason: str


def classify(report_format: ReportFormat, finding: Finding, text: str = "") -> Classification:
    """``text`` is what a person wrote (subject and body); keyword rules read it and the
    finding's own description."""
    kind = finding.kind.strip().lower()
    if finding.category is not None:
        return Classification(
            finding.category, None, 1.0, f"{report_format.label}: {kind or 'its category'}"
        )
    if report_format in (ReportFormat.DMCA_ACNS, ReportFormat.DMCA_TEXT):
        return Classification(Category.COPYRIGHT, None, 1.0, "a DMCA notice")
    if report_format is ReportFormat.ARF:
        if kind in _ARF_KINDS:
            return Classification(_ARF_KINDS[kind], None, 0.9, f"ARF feedback type {kind}")
        if kind in _ARF_NO_CASE:
            return Classification(None, None, 1.0, f"ARF feedback type {kind}: no violation")
    if report_format is ReportFormat.SHADOWSERVER:
        if kind.startswith("scan"):
            return Classification(
                Category.VULNERABLE_SERVICE, None, 0.9, f"Shadowserver {kind}: open service"
            )
        if kind.startswith("event4_sinkhole"):
            return Classification(Category.MALWARE, None, 0.9, f"Shadowserver {kind}: infected")
        return Classification(None, None, 1.0, f"Shadowserver {kind or 'report'}: informational")
    words = f"{text}\n{finding.description}"
    for category, pattern in _KEYWORDS:
        match = pattern.search(words)
        if match:
            return Classification(category, None, 0.6, f"keyword {match.group(0).lower()!r}")
    if stated := _stated_category(text):
        # Below the keywords: what the complaint says happened outweighs the box ticked.
        return Classification(stated, None, 0.5, f"the complainant chose {stated.value}")
    return Classification(
        Category.UNLAWFUL_CONTENT, None, 0.2, "no keyword matched: the catch-all category"
    )


# The line that the web form and the API's structured complaints write
# (intake.service.structured_message).
_STATED = re.compile(r"^Category: ([a-z_]+)\s*$", re.MULTILINE)


def _stated_category(text: str) -> Category | None:
    match = _STATED.search(text)
    if match and match.group(1) in Category.__members__.values():
        return Category(match.group(1))
    return None
