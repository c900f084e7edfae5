"""Locating a report's findings in bulk: every address in one vectorised lookup, each at its own
row's time, with the same answers as locating them one at a time."""

from __future__ import annotations

import io
import random
import zipfile
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.intake.choices import ReportStatus
from abusedesk.intake.formats import Finding
from abusedesk.intake.locate import locate_findings
from abusedesk.inventory import service as inventory
from abusedesk.inventory.locate import locate_in
from abusedesk.inventory.schemas import AssignmentIn, DomainIn, ServerIn
from abusedesk.policy import Category
from tests import factories
from tests.integration.test_intake_pipeline import LONG_AGO, cases, run

HANDOVER = datetime(2026, 1, 1, tzinfo=UTC)
BEFORE, AFTER = HANDOVER - timedelta(days=30), HANDOVER + timedelta(days=30)


def two_holders(desk: Desk) -> tuple[int, int]:
    """198.51.100.7 was C1001's server until HANDOVER, C1002's since. Returns both server ids."""
    factories.customer(desk, "C1001", servers=0)
    factories.customer(desk, "C1002", servers=0)
    old = inventory.create_server(
        desk.uow(),
        SYSTEM,
        ServerIn(
            account_reference="C1001",
            hostname="old.c1001.example",
            plan="vps-small",
            assignments=[
                AssignmentIn(prefix="198.51.100.7/32", valid_from=LONG_AGO, valid_until=HANDOVER),
                AssignmentIn(prefix="2001:db8:1::/48", valid_from=LONG_AGO),
            ],
        ),
    )
    new = inventory.create_server(
        desk.uow(),
        SYSTEM,
        ServerIn(
            account_reference="C1002",
            hostname="new.c1002.example",
            plan="vps-small",
            assignments=[AssignmentIn(prefix="198.51.100.7/32", valid_from=HANDOVER)],
        ),
    )
    inventory.create_domain(
        desk.uow(),
        SYSTEM,
        DomainIn(
            account_reference="C1002", name="shop.example", server_hostname="new.c1002.example"
        ),
    )
    return old.id, new.id


def test_each_row_is_located_at_its_own_time(desk: Desk) -> None:
    old, new = two_holders(desk)
    findings = [
        Finding(None, ("198.51.100.7",), event_time=BEFORE),
        Finding(None, ("198.51.100.7",), event_time=AFTER),
        Finding(None, ("198.51.100.7",)),  # no time of its own: the report's
        Finding(None, ("192.0.2.1",), event_time=AFTER),  # nobody's
        Finding(None, ("2001:db8:1::5",), event_time=AFTER),
        Finding(None, (), urls=("http://198.51.100.7/phish",), event_time=BEFORE),
        Finding(None, (), domains=("www.shop.example",), event_time=BEFORE),
    ]
    with desk.uow() as uow:
        where = locate_findings(uow.session, findings, default_at=AFTER)
    servers = [p.server_id if p else None for p in where.place]
    assert servers == [old, new, new, None, old, old, new]
    assert where.target[5] == "http://198.51.100.7/phish"
    assert where.target[6] == "www.shop.example"


def test_a_finding_about_two_customers_locates_each_once(desk: Desk) -> None:
    old, new = two_holders(desk)
    finding = Finding(
        None,
        ("2001:db8:1::9", "198.51.100.7"),
        urls=("http://shop.example/",),
        event_time=AFTER,
    )
    with desk.uow() as uow:
        where = locate_findings(uow.session, [finding], default_at=AFTER)
    # C1001 by the IPv6 address (first), C1002 by the IPv4 address (before the URL).
    assert [(t, p.server_id) for t, p in where.of(0)] == [
        ("2001:db8:1::9", old),
        ("198.51.100.7", new),
    ]


def test_bulk_answers_are_those_of_one_at_a_time(desk: Desk) -> None:
    two_holders(desk)
    rng = random.Random(5)
    pool = ["198.51.100.7", "198.51.100.8", "2001:db8:1::1", "2001:db8:2::1", "192.0.2.4"]
    times = [BEFORE, AFTER, HANDOVER, HANDOVER - timedelta(microseconds=1), None]
    findings = [
        Finding(None, (rng.choice(pool),), event_time=rng.choice(times)) for _ in range(500)
    ]
    with desk.uow() as uow:
        where = locate_findings(uow.session, findings, default_at=AFTER)
        for i, finding in enumerate(findings):
            one = locate_in(uow.session, finding.addresses[0], finding.event_time or AFTER)
            bulk = where.place[i]
            assert (one.server_id if one else None) == (bulk.server_id if bulk else None), i


def shadowserver(rows: list[tuple[datetime, str]]) -> bytes:
    lines = ['"timestamp","ip","protocol","port","hostname","tag"']
    for when, address in rows:
        lines.append(f'"{when:%Y-%m-%d %H:%M:%S}","{address}","tcp",6379,,"redis"')
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("2026-02-01-scan_redis-asn.csv", "\n".join(lines) + "\n")
    message = EmailMessage()
    message["From"] = "Shadowserver <autoreports@shadowserver.org>"
    message["Subject"] = "Shadowserver scan_redis Report: 2026-02-01"
    message["Date"] = "Sun, 01 Feb 2026 06:00:00 +0000"
    message.set_content("Attached.")
    message.add_attachment(
        archive.getvalue(),
        maintype="application",
        subtype="zip",
        filename="2026-02-01-scan_redis-asn.csv.zip",
    )
    return bytes(message)


def test_a_feed_whose_rows_span_a_handover_reaches_both_holders(desk: Desk) -> None:
    old, new = two_holders(desk)
    raw = shadowserver(
        [(BEFORE, "198.51.100.7")] * 3 + [(AFTER, "198.51.100.7")] * 2 + [(AFTER, "192.0.2.9")]
    )
    result = run(desk, raw)
    assert result.status is ReportStatus.ACCEPTED
    found = {c.server_id: c for c in cases(desk)}
    assert set(found) == {old, new}
    assert found[old].category is Category.VULNERABLE_SERVICE
    assert found[old].resource == "old.c1001.example"
    assert found[new].resource == "new.c1002.example"
    assert found[old].summary.startswith("3 findings")
    assert found[new].summary.startswith("2 findings")


def test_the_feed_path_groups_as_the_general_path_does(desk: Desk) -> None:
    from dataclasses import replace

    from abusedesk.intake.formats import detect_and_parse
    from abusedesk.intake.formats.base import FeedRows
    from abusedesk.intake.pipeline import _locate_and_classify

    two_holders(desk)
    rng = random.Random(11)
    pool = ["198.51.100.7", "2001:db8:1::1", "2001:db8:1::2", "192.0.2.4"]
    times = [BEFORE, AFTER, HANDOVER]
    raw = shadowserver([(rng.choice(times), rng.choice(pool)) for _ in range(300)])
    parsed = detect_and_parse(raw)
    assert isinstance(parsed.findings, FeedRows)
    general = replace(parsed, findings=tuple(parsed.findings))
    with desk.uow() as uow:
        fast = _locate_and_classify(uow.session, parsed, AFTER)
        slow = _locate_and_classify(uow.session, general, AFTER)

    def shape(found: object) -> list[tuple[object, ...]]:
        return [
            (g.account_id, g.server_id, g.category, g.resource, g.count, g.findings)
            for g in found.groups  # type: ignore[attr-defined]
        ]

    assert shape(fast) == shape(slow)
    assert (fast.located, fast.ignored) == (slow.located, slow.ignored)
    assert len(fast.groups) == 2
