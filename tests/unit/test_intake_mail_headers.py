"""The plain-header shortcuts of ``formats._mail`` give what the full header parser gives."""

from __future__ import annotations

import email.parser
import email.policy

import pytest

from abusedesk.intake.formats import _mail

POLICIES = [_mail._POLICY, email.policy.compat32]


def message(headers: str, policy: email.policy.Policy) -> email.message.Message:
    return email.parser.BytesParser(policy=policy).parsebytes(
        f"{headers}\r\nSubject: x\r\n\r\nbody\r\n".encode()
    )


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "value",
    [
        "Pat Example 12 <pat12@isp.example>",
        "O'Brien-Smith <o_b+tag@mail.isp.example>",
        "<bare@isp.example>",
        "bare@isp.example",
        "  spaced@isp.example  ",
        # Not plain: the full parser decides (quotes, encoded words, comments, groups, lists).
        '"Example, Pat" <pat@isp.example>',
        "=?utf-8?q?Caf=C3=A9?= <cafe@isp.example>",
        "pat@isp.example (Pat Example)",
        "Undisclosed:;",
        "a@isp.example, b@isp.example",
        "Pat  Example <pat@isp.example>",
        "Pat Ex. <pat@isp.example>",
        "not an address",
        "<broken@isp.example",
    ],
)
def test_an_address_reads_as_the_full_parser_reads_it(
    value: str, policy: email.policy.Policy
) -> None:
    quick = _mail.address(message(f"From: {value}", policy), "From")
    full = _mail._address(message(f"From: {value}", policy), "From")
    assert quick == full


def test_only_plain_addresses_take_the_shortcut() -> None:
    plain = message("From: Pat Example <pat@isp.example>", _mail._POLICY)
    assert _mail._simple_address(plain, "From") == ("Pat Example", "pat@isp.example")
    quoted = message('From: "Pat" <pat@isp.example>', _mail._POLICY)
    assert _mail._simple_address(quoted, "From") is None
    assert _mail.address(quoted, "From") == ("Pat", "pat@isp.example")
    assert _mail.address(plain, "Reply-To") == ("", "")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "value",
    [
        "<20260601.abc-123+x@mail.isp.example>",
        "<a!#$%&'*+/=?^_`{|}~.b@host>",
        "<with space@isp.example>",
        "<a@b> (comment)",
        "no brackets@isp.example",
        "<>",
    ],
)
def test_a_message_id_reads_as_the_full_parser_reads_it(
    value: str, policy: email.policy.Policy
) -> None:
    read = _mail.message_id(message(f"Message-ID: {value}", policy))
    try:
        full = _mail.unfold(str(message(f"Message-ID: {value}", policy)["Message-ID"]))
    except Exception:  # the parser refuses it: the raw text is what _mail falls back to
        full = value.strip()
    assert read == (full or None)
