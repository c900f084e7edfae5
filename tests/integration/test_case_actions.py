"""What the staff console does to cases besides single transitions: write to the customer,
merge two cases, act on a selection, and search."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import SYSTEM, Actor
from abusedesk.audit.models import AuditEntry
from abusedesk.bootstrap import Desk
from abusedesk.cases import machine
from abusedesk.cases import service as cases
from abusedesk.cases.choices import CaseState, Event, Resolution, TimelineKind
from abusedesk.cases.models import CaseEvent, case_reports
from abusedesk.clock import FakeClock
from abusedesk.enforce.choices import ActionKind
from abusedesk.enforce.models import EnforcementAction
from abusedesk.errors import (
    Conflict,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from abusedesk.inventory import service as inventory
from abusedesk.inventory.choices import ServerStatus
from abusedesk.inventory.models import Server
from abusedesk.inventory.schemas import AssignmentIn, DomainIn
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.render import render
from abusedesk.policy import Category
from tests import factories

ANALYST = Actor("analyst:ann@provider.example", Role.ANALYST, user_id=900)
CLOSE = machine.Command(Event.CLOSE, reason="handled", resolution=Resolution.INVALID)


def customer_of(c: factories.Customer) -> Actor:
    return Actor(f"customer:owner@{c.reference}", Role.CUSTOMER, user_id=1, account_id=c.account_id)


def open_case(
    desk: Desk,
    c: factories.Customer,
    resource: str = "",
    category: Category = Category.SPAM,
    summary: str = "spam from the mailer",
    report_ids: tuple[int, ...] = (),
    server: int | None = 0,
) -> int:
    return cases.open_case(
        desk.uow(),
        ANALYST,
        cases.NewCase(
            c.account_id,
            category,
            server_id=None if server is None else c.server_ids[server],
            resource=resource,
            summary=summary,
            report_ids=report_ids,
        ),
        desk.policy,
    ).case.id


def rows(desk: Desk, model: type) -> list:
    with desk.uow() as uow:
        order = sa.inspect(model).primary_key[0]  # the audit log's key is its sequence
        return list(uow.session.execute(sa.select(model).order_by(order)).scalars())


def kinds(desk: Desk, case_id: int) -> list[TimelineKind]:
    return [e.kind for e in rows(desk, CaseEvent) if e.case_id == case_id]


def audit_actions(desk: Desk, case_id: int) -> list[str]:
    return [
        a.action
        for a in rows(desk, AuditEntry)
        if a.object_type == "case" and a.object_id == str(case_id)
    ]


def reports_of(desk: Desk, case_id: int) -> list[int]:
    with desk.uow() as uow:
        return sorted(
            uow.session.execute(
                sa.select(case_reports.c.report_id).where(case_reports.c.case_id == case_id)
            ).scalars()
        )


# --- message_customer ---------------------------------------------------------------------


def test_a_staff_message_is_mailed_shown_to_the_customer_and_audited(desk: Desk) -> None:
    c = factories.customer(desk)
    case_id = open_case(desk, c)
    text = "Please also check <script> tags in /var/www.\nThank you."
    case = cases.message_customer(desk.uow(), ANALYST, case_id, f"  {text}  ", desk.policy)
    assert case.state is CaseState.OPEN

    [mail] = [m for m in rows(desk, OutboxMessage) if m.template is MessageTemplate.STAFF_MESSAGE]
    assert mail.recipients == ["abuse@c1001.example"]
    assert mail.context["note"] == text
    assert mail.case_id == case_id
    assert kinds(desk, case_id)[-1] is TimelineKind.MESSAGE_TO_CUSTOMER
    assert audit_actions(desk, case_id)[-1] == "case.message_to_customer"

    # The template shows the text, as text in both bodies.
    rendered = render(
        MessageTemplate.STAFF_MESSAGE,
        mail.context,
        "en",
        "https://desk.example",
        desk.policy,
        now=desk.clock.now(),
    )
    assert "Please also check <script> tags in /var/www." in rendered.text
    assert "&lt;script&gt;" in rendered.html
    assert "<script>" not in rendered.html

    seen = cases.timeline_for(customer_of(c), cases.get_case(desk.uow(), customer_of(c), case_id))
    assert (seen[-1].kind, seen[-1].actor, seen[-1].note) == (
        TimelineKind.MESSAGE_TO_CUSTOMER,
        cases.DESK_LABEL,
        text,
    )


def test_a_staff_message_needs_text_and_staff(desk: Desk) -> None:
    c = factories.customer(desk)
    other = factories.customer(desk, "C2002", base="203.0.113")
    case_id = open_case(desk, c)
    with pytest.raises(ValidationError):
        cases.message_customer(desk.uow(), ANALYST, case_id, " \n ", desk.policy)
    with pytest.raises(PermissionDenied):
        cases.message_customer(desk.uow(), customer_of(c), case_id, "hi", desk.policy)
    with pytest.raises(NotFound):
        cases.message_customer(desk.uow(), customer_of(other), case_id, "hi", desk.policy)
    with pytest.raises(NotFound):
        cases.message_customer(desk.uow(), ANALYST, 999_999, "hi", desk.policy)
    assert kinds(desk, case_id) == [TimelineKind.OPENED]


def test_a_terminated_case_can_still_be_written_about(desk: Desk) -> None:
    c = factories.customer(desk)
    case_id = open_case(desk, c)
    cases.transition(
        desk.uow(), ANALYST, case_id, machine.Command(Event.TERMINATE, reason="fraud"), desk.policy
    )
    done = cases.message_customer(
        desk.uow(), ANALYST, case_id, "Your data can be collected until Friday.", desk.policy
    )
    assert done.state is CaseState.TERMINATED
    assert kinds(desk, case_id)[-1] is TimelineKind.MESSAGE_TO_CUSTOMER


# --- merge_cases --------------------------------------------------------------------------


def test_merging_moves_the_reports_closes_as_duplicate_and_marks_both(desk: Desk) -> None:
    c = factories.customer(desk)
    r1, r2, r3 = (factories.report(desk) for _ in range(3))
    keep = open_case(desk, c, "http://a.c1001.example/", report_ids=(r1,))
    merge = open_case(desk, c, "http://b.c1001.example/", report_ids=(r1, r2, r3))
    mail_before = len(rows(desk, OutboxMessage))

    kept = cases.merge_cases(desk.uow(), ANALYST, keep, merge, "same mailer", desk.policy)
    assert kept.id == keep
    assert kept.state is CaseState.OPEN
    assert reports_of(desk, keep) == [r1, r2, r3]
    assert reports_of(desk, merge) == [r1, r2, r3]  # the merged case keeps its evidence

    merged = cases.get_case(desk.uow(), SYSTEM, merge)
    assert (merged.state, merged.resolution) == (CaseState.CLOSED, Resolution.DUPLICATE)
    assert [e.kind for e in merged.timeline] == [
        TimelineKind.OPENED,
        TimelineKind.MERGED_INTO,
        TimelineKind.CLOSED,
    ]
    assert merged.timeline[1].data == {"into": keep}
    assert merged.timeline[-1].data["resolution"] == "duplicate"
    assert kinds(desk, keep) == [TimelineKind.OPENED, TimelineKind.MERGED_FROM]
    last = cases.get_case(desk.uow(), SYSTEM, keep).timeline[-1]
    assert last.data["from"] == merge
    assert merged.ticket in last.note

    assert audit_actions(desk, merge)[-2:] == ["case.merged_into", "case.closed"]
    assert audit_actions(desk, keep)[-1] == "case.merged_from"
    # No "closed" mail: the matter goes on under the kept ticket.
    assert len(rows(desk, OutboxMessage)) == mail_before

    # What the customer reads on the merged ticket names the kept one.
    seen = cases.timeline_for(customer_of(c), cases.get_case(desk.uow(), customer_of(c), merge))
    assert any(kept.ticket in e.note for e in seen if e.kind is TimelineKind.MERGED_INTO)


def test_merging_refuses_what_cannot_be_merged(desk: Desk) -> None:
    c = factories.customer(desk)
    other = factories.customer(desk, "C2002", base="203.0.113")
    a = open_case(desk, c, "a")
    b = open_case(desk, c, "b")
    theirs = open_case(desk, other, "a")
    closed = open_case(desk, c, "closed")
    cases.transition(desk.uow(), ANALYST, closed, CLOSE, desk.policy)

    def merge(keep: int, merge: int, actor: Actor = ANALYST, reason: str = "dup") -> None:
        cases.merge_cases(desk.uow(), actor, keep, merge, reason, desk.policy)

    with pytest.raises(ValidationError, match="itself"):
        merge(a, a)
    with pytest.raises(ValidationError, match="reason"):
        merge(a, b, reason="  ")
    with pytest.raises(ValidationError, match="different accounts"):
        merge(a, theirs)
    with pytest.raises(InvalidTransition, match="closed"):
        merge(a, closed)
    with pytest.raises(InvalidTransition, match="closed"):
        merge(closed, a)
    with pytest.raises(NotFound):
        merge(a, 999_999)
    with pytest.raises(PermissionDenied):
        merge(a, b, actor=customer_of(c))
    # Nothing of the refused attempts was written.
    assert kinds(desk, a) == kinds(desk, b) == [TimelineKind.OPENED]
    assert cases.get_case(desk.uow(), SYSTEM, b).state is CaseState.OPEN


def test_merging_never_reconnects_a_server_by_the_way(desk: Desk) -> None:
    c = factories.customer(desk, servers=2)
    cut = open_case(desk, c, "cut")
    running = open_case(desk, c, "running")
    disconnect = machine.Command(Event.DISCONNECT, reason="still sending")
    cases.transition(desk.uow(), ANALYST, cut, disconnect, desk.policy)
    with pytest.raises(Conflict, match="reconnect"):
        cases.merge_cases(desk.uow(), ANALYST, running, cut, "dup", desk.policy)
    # A disconnected case on another server does not hold this one either.
    elsewhere = open_case(desk, c, "elsewhere", server=1)
    cases.transition(desk.uow(), ANALYST, elsewhere, disconnect, desk.policy)
    with pytest.raises(Conflict):
        cases.merge_cases(desk.uow(), ANALYST, elsewhere, cut, "dup", desk.policy)

    # Kept disconnected on the same server: the server stays cut, no reconnection is queued.
    also_cut = open_case(desk, c, "also cut")
    cases.transition(desk.uow(), ANALYST, also_cut, disconnect, desk.policy)
    cases.merge_cases(desk.uow(), ANALYST, also_cut, cut, "dup", desk.policy)
    assert cases.get_case(desk.uow(), SYSTEM, cut).state is CaseState.CLOSED
    assert {s.id: s.status for s in rows(desk, Server)}[c.server_ids[0]] is (
        ServerStatus.DISCONNECTED
    )
    assert ActionKind.RECONNECT not in [a.kind for a in rows(desk, EnforcementAction)]
    # The other direction is always fine: an open case merged into a disconnected one.
    cases.merge_cases(desk.uow(), ANALYST, also_cut, running, "dup", desk.policy)


# --- transition_many ----------------------------------------------------------------------


def test_a_bulk_action_reports_each_case_and_goes_on_past_refusals(desk: Desk) -> None:
    c = factories.customer(desk)
    first, second, third = (open_case(desk, c, f"r{n}") for n in range(3))
    cases.transition(desk.uow(), ANALYST, second, CLOSE, desk.policy)

    outcomes = cases.transition_many(
        desk.uow, ANALYST, [first, second, 999_999, third, first], CLOSE, desk.policy
    )
    assert [(o.case_id, o.ok, o.state) for o in outcomes] == [
        (first, True, CaseState.CLOSED),
        (second, False, None),
        (999_999, False, None),
        (third, True, CaseState.CLOSED),
    ]
    assert "closed" in outcomes[1].error
    assert "999999" in outcomes[2].error
    assert all(o.error == "" for o in outcomes if o.ok)
    # Each case that moved has its own timeline and audit entry.
    assert kinds(desk, third) == [TimelineKind.OPENED, TimelineKind.CLOSED]


def test_a_bulk_action_checks_rights_per_case_and_caps_the_selection(desk: Desk) -> None:
    c = factories.customer(desk)
    other = factories.customer(desk, "C2002", base="203.0.113")
    mine = open_case(desk, c)
    theirs = open_case(desk, other)
    me = customer_of(c)
    outcomes = cases.transition_many(
        desk.uow,
        me,
        [mine, theirs],
        machine.Command(Event.ACKNOWLEDGE, plan="we remove the mailer"),
        desk.policy,
    )
    assert [(o.ok, o.state) for o in outcomes] == [(True, CaseState.ACKNOWLEDGED), (False, None)]
    assert outcomes[1].error == "no such case"
    [denied] = cases.transition_many(desk.uow, me, [mine], CLOSE, desk.policy)
    assert not denied.ok
    assert "may not" in denied.error

    with pytest.raises(ValidationError, match="at most 500"):
        cases.transition_many(desk.uow, ANALYST, range(1, 502), CLOSE, desk.policy)


# --- search -------------------------------------------------------------------------------


def ids(desk: Desk, actor: Actor = ANALYST, **filt: object) -> list[int]:
    found = [case.id for case in cases.list_cases(desk.uow(), actor, cases.CaseFilter(**filt))]
    assert cases.count_cases(desk.uow(), actor, cases.CaseFilter(**filt)) == len(found)
    return found


def test_search_by_address_finds_past_and_present_holders_and_resources(
    desk: Desk, clock: FakeClock
) -> None:
    c = factories.customer(desk, servers=3)  # 198.51.100.1/32, .2/32, .3/32
    start = clock.now()
    inventory.assign_prefix(
        desk.uow(),
        SYSTEM,
        c.hostnames[1],
        AssignmentIn(
            prefix="192.0.2.0/24", valid_from=start - timedelta(days=300), valid_until=start
        ),
    )
    inventory.assign_prefix(
        desk.uow(), SYSTEM, c.hostnames[2], AssignmentIn(prefix="2001:db8::/48")
    )
    on_first = open_case(desk, c, "mailer", server=0)
    on_second = open_case(desk, c, "old address", server=1)
    on_third = open_case(desk, c, "v6", server=2)
    by_resource = open_case(desk, c, "http://203.0.113.77/kit", server=None)

    assert ids(desk, ip="198.51.100.1") == [on_first]
    assert ids(desk, ip="192.0.2.200") == [on_second]  # held until now: found all the same
    assert ids(desk, ip="2001:db8:0:0::9") == [on_third]
    assert ids(desk, ip="[2001:db8::9]") == [on_third]
    assert ids(desk, ip="203.0.113.77") == [by_resource]
    assert ids(desk, ip="198.51.100.9") == []
    with pytest.raises(ValidationError):
        ids(desk, ip="198.51.100.")


def test_search_by_domain_resource_and_inventory(desk: Desk) -> None:
    c = factories.customer(desk)
    other = factories.customer(desk, "C2002", base="203.0.113")
    inventory.create_domain(
        desk.uow(), SYSTEM, DomainIn(account_reference="C1001", name="shop.example")
    )
    held = open_case(desk, c, "mailer")
    named = open_case(desk, other, "http://WWW.Phish.example/login")
    open_case(desk, other, "unrelated")

    assert ids(desk, domain="shop.example") == [held]
    assert ids(desk, domain="www.shop.example.") == [held]  # the account holds the parent
    assert ids(desk, domain="phish.example") == [named]
    assert ids(desk, domain="other.example") == []


def test_search_by_reporter_and_text(desk: Desk) -> None:
    c = factories.customer(desk)
    jane = factories.report(desk, "jane@complainant.example", "Jane Doe")
    spamtrap = factories.report(desk, "traps@blocklist.example", "Blocklist")
    by_jane = open_case(desk, c, "a", summary="Spam run 100% confirmed", report_ids=(jane,))
    by_trap = open_case(desk, c, "b", summary="spam run", report_ids=(spamtrap, jane))
    nobody = open_case(desk, c, "c", summary="Spam_run")

    assert ids(desk, reporter="JANE") == [by_trap, by_jane]
    assert ids(desk, reporter="blocklist.example") == [by_trap]
    assert ids(desk, reporter="doe") == [by_trap, by_jane]
    assert ids(desk, text="SPAM RUN") == [by_trap, by_jane]
    assert ids(desk, text="100%") == [by_jane]  # user input is no LIKE pattern
    assert ids(desk, text="_run") == [nobody]
    assert ids(desk, text="spam", reporter="blocklist") == [by_trap]
    with pytest.raises(PermissionDenied):
        ids(desk, customer_of(c), reporter="jane")


def test_search_keeps_a_customer_to_its_own_account(desk: Desk) -> None:
    c = factories.customer(desk)
    other = factories.customer(desk, "C2002", base="203.0.113")
    mine = open_case(desk, c, "http://x.example/")
    open_case(desk, other, "http://x.example/")
    me = customer_of(c)
    assert ids(desk, me, text="x.example") == [mine]
    assert ids(desk, me, account_id=other.account_id, domain="x.example") == [mine]
    assert ids(desk, me, ip="203.0.113.1") == []
    assert len(ids(desk, text="x.example")) == 2
    # Paging: the count ignores the page.
    assert cases.count_cases(desk.uow(), ANALYST, cases.CaseFilter(limit=1, offset=1)) == 2
    assert len(cases.list_cases(desk.uow(), ANALYST, cases.CaseFilter(limit=1, offset=1))) == 1
