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
from abusedesk.cases.models import CaseEvent
from abusedesk.clock import FakeClock
from abusedesk.enforce.choices import ActionKind, ActionState
from abusedesk.enforce.models import EnforcementAction
from abusedesk.errors import InvalidTransition, NotFound, PermissionDenied, ValidationError
from abusedesk.inventory.choices import AccountStatus, ServerStatus
from abusedesk.inventory.models import Account, Server
from abusedesk.notify.choices import Audience, MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.policy import Category
from tests import factories

ANALYST = Actor("analyst:ann@provider.example", Role.ANALYST, user_id=900)


def open_spam(desk: Desk, c: factories.Customer, resource: str = "") -> cases.Opened:
    return cases.open_case(
        desk.uow(),
        ANALYST,
        cases.NewCase(
            c.account_id,
            Category.SPAM,
            server_id=c.server_ids[0],
            resource=resource,
            summary="spam from the mailer",
        ),
        desk.policy,
    )


def rows(desk: Desk, model: type) -> list:
    with desk.uow() as uow:
        return list(uow.session.execute(sa.select(model)).scalars())


def test_opening_writes_the_case_its_timeline_audit_and_the_ticket_mail(desk: Desk) -> None:
    c = factories.customer(desk)
    opened = open_spam(desk, c)
    assert opened.created
    case = opened.case
    assert case.state is CaseState.OPEN
    assert case.deadline_at == desk.clock.now() + timedelta(hours=24)
    assert case.resource == c.hostnames[0]
    events = rows(desk, CaseEvent)
    assert [e.kind for e in events] == [TimelineKind.OPENED]
    audit = [a for a in rows(desk, AuditEntry) if a.object_type == "case"]
    assert [a.action for a in audit] == ["case.opened"]
    mail = rows(desk, OutboxMessage)
    assert [(m.template, m.audiences) for m in mail] == [
        (MessageTemplate.TICKET_CREATED, [Audience.ABUSE.value, Audience.TECHNICAL.value]),
    ]
    assert mail[0].recipients == ["abuse@c1001.example", "noc@c1001.example"]
    assert mail[0].context["ticket"] == case.ticket


def test_a_second_finding_is_attached_not_duplicated(desk: Desk) -> None:
    c = factories.customer(desk)
    first = open_spam(desk, c).case
    second = open_spam(desk, c)
    assert not second.created
    assert second.case.id == first.id
    kinds = [e.kind for e in rows(desk, CaseEvent)]
    assert kinds == [TimelineKind.OPENED, TimelineKind.REPORT_ATTACHED]
    # Another category, or another resource, is another case.
    other = cases.open_case(
        desk.uow(),
        ANALYST,
        cases.NewCase(c.account_id, Category.PHISHING, server_id=c.server_ids[0]),
        desk.policy,
    )
    assert other.created


def test_a_repeat_within_the_window_is_marked_and_shortened(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c).case
    cases.report_fix(desk.uow(), ANALYST, case.id, "mailer removed", desk.policy)
    cases.transition(desk.uow(), ANALYST, case.id, machine.Command(Event.VERIFY_FIX), desk.policy)
    clock.advance(timedelta(days=30))
    again = open_spam(desk, c).case
    assert again.id != case.id
    assert again.is_repeat
    assert again.deadline_at == clock.now() + desk.policy.repeat.shortened_window
    clock.advance(timedelta(days=100))
    cases.transition(
        desk.uow(),
        ANALYST,
        again.id,
        machine.Command(Event.CLOSE, reason="not ours", resolution=Resolution.INVALID),
        desk.policy,
    )
    later = open_spam(desk, c).case
    assert not later.is_repeat


def test_critical_disconnects_at_once_and_sets_server_and_account_status(desk: Desk) -> None:
    c = factories.customer(desk, servers=2)
    opened = cases.open_case(
        desk.uow(),
        ANALYST,
        cases.NewCase(c.account_id, Category.CSAM, resource="http://srv0.c1001.example/x"),
        desk.policy,
    )
    case = opened.case
    assert case.state is CaseState.DISCONNECTED
    assert case.deadline_at == desk.clock.now() + desk.policy.termination_grace
    actions = rows(desk, EnforcementAction)
    # A case not tied to one server cuts every server of the account.
    assert sorted(a.server_id for a in actions) == sorted(c.server_ids)
    assert {(a.kind, a.state) for a in actions} == {(ActionKind.DISCONNECT, ActionState.PENDING)}
    assert {s.status for s in rows(desk, Server)} == {ServerStatus.DISCONNECTED}
    assert rows(desk, Account)[0].status is AccountStatus.SUSPENDED
    templates = [m.template for m in rows(desk, OutboxMessage)]
    assert templates == [MessageTemplate.TICKET_CREATED, MessageTemplate.DISCONNECTED]
    kinds = [e.kind for e in rows(desk, CaseEvent)]
    assert kinds == [TimelineKind.OPENED, TimelineKind.DISCONNECTED]


def test_disconnect_reconnect_restores_the_server(desk: Desk) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c).case
    cmd = machine.Command
    cases.transition(
        desk.uow(), ANALYST, case.id, cmd(Event.DISCONNECT, reason="still sending"), desk.policy
    )
    with pytest.raises(InvalidTransition, match="not made contact"):
        cases.transition(
            desk.uow(), ANALYST, case.id, cmd(Event.RECONNECT, reason="ok"), desk.policy
        )
    customer = Actor("customer:owner@c1001", Role.CUSTOMER, user_id=1, account_id=c.account_id)
    cases.transition(
        desk.uow(), customer, case.id, cmd(Event.CUSTOMER_CONTACT, reason="fixed"), desk.policy
    )
    done = cases.transition(
        desk.uow(), ANALYST, case.id, cmd(Event.RECONNECT, reason="verified"), desk.policy
    )
    assert done.state is CaseState.CLOSED
    assert done.resolution is Resolution.RESOLVED
    assert rows(desk, Server)[0].status is ServerStatus.ACTIVE
    assert rows(desk, Account)[0].status is AccountStatus.ACTIVE
    kinds = [a.kind for a in rows(desk, EnforcementAction)]
    assert kinds == [ActionKind.DISCONNECT, ActionKind.RECONNECT]


def test_terminate_ends_every_service_of_the_account(desk: Desk) -> None:
    c = factories.customer(desk, servers=3)
    case = open_spam(desk, c).case
    cases.transition(
        desk.uow(),
        ANALYST,
        case.id,
        machine.Command(Event.TERMINATE, reason="fraudulent signup"),
        desk.policy,
    )
    assert {s.status for s in rows(desk, Server)} == {ServerStatus.TERMINATED}
    assert rows(desk, Account)[0].status is AccountStatus.TERMINATED
    assert len([a for a in rows(desk, EnforcementAction) if a.kind is ActionKind.TERMINATE]) == 3


def test_customers_act_only_on_their_own_cases(desk: Desk) -> None:
    mine = factories.customer(desk, "C1001")
    theirs = factories.customer(desk, "C2002", base="203.0.113")
    my_case = open_spam(desk, mine).case
    their_case = open_spam(desk, theirs).case
    me = Actor("customer:me", Role.CUSTOMER, user_id=5, account_id=mine.account_id)
    assert cases.get_case(desk.uow(), me, my_case.id).id == my_case.id
    with pytest.raises(NotFound):
        cases.get_case(desk.uow(), me, their_case.id)
    with pytest.raises(NotFound):
        cases.acknowledge(desk.uow(), me, their_case.id, "plan", desk.policy)
    listed = cases.list_cases(desk.uow(), me, cases.CaseFilter(account_id=theirs.account_id))
    assert [x.id for x in listed] == [my_case.id]
    with pytest.raises(PermissionDenied):
        cases.transition(
            desk.uow(),
            me,
            my_case.id,
            machine.Command(Event.CLOSE, reason="x", resolution=Resolution.INVALID),
            desk.policy,
        )
    acked = cases.acknowledge(desk.uow(), me, my_case.id, "we will disable the form", desk.policy)
    assert acked.state is CaseState.ACKNOWLEDGED
    assert acked.plan == "we will disable the form"


def test_zero_tolerance_reconnect_needs_legal(desk: Desk) -> None:
    c = factories.customer(desk)
    case = cases.open_case(
        desk.uow(),
        ANALYST,
        cases.NewCase(c.account_id, Category.CSAM, server_id=c.server_ids[0]),
        desk.policy,
    ).case
    cases.transition(
        desk.uow(), ANALYST, case.id, machine.Command(Event.CUSTOMER_CONTACT), desk.policy
    )
    with pytest.raises(PermissionDenied, match="zero tolerance"):
        cases.transition(
            desk.uow(), ANALYST, case.id, machine.Command(Event.RECONNECT, reason="x"), desk.policy
        )
    legal = Actor("legal:l@x", Role.LEGAL, user_id=7)
    done = cases.transition(
        desk.uow(), legal, case.id, machine.Command(Event.RECONNECT, reason="court"), desk.policy
    )
    assert done.state is CaseState.CLOSED


def test_a_refused_transition_changes_nothing(desk: Desk) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c).case
    before_events = len(rows(desk, CaseEvent))
    before_audit = len(rows(desk, AuditEntry))
    with pytest.raises(InvalidTransition):
        cases.transition(
            desk.uow(), ANALYST, case.id, machine.Command(Event.VERIFY_FIX), desk.policy
        )
    assert len(rows(desk, CaseEvent)) == before_events
    assert len(rows(desk, AuditEntry)) == before_audit
    assert cases.get_case(desk.uow(), SYSTEM, case.id).state is CaseState.OPEN


def test_change_deadline_is_recorded_with_its_reason(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c).case
    new = clock.now() + timedelta(days=3)
    moved = cases.transition(
        desk.uow(),
        ANALYST,
        case.id,
        machine.Command(Event.CHANGE_DEADLINE, reason="customer on holiday", deadline=new),
        desk.policy,
    )
    assert moved.deadline_at == new
    last = cases.get_case(desk.uow(), SYSTEM, case.id).timeline[-1]
    assert last.kind is TimelineKind.DEADLINE_CHANGED
    assert last.note == "customer on holiday"
    assert last.data["previous_deadline"] == case.deadline_at.isoformat()


def test_closing_one_case_keeps_a_server_another_case_cut(desk: Desk) -> None:
    c = factories.customer(desk)
    cmd = machine.Command
    spam = open_spam(desk, c).case
    phish = cases.open_case(
        desk.uow(),
        ANALYST,
        cases.NewCase(c.account_id, Category.PHISHING, server_id=c.server_ids[0]),
        desk.policy,
    ).case
    for case in (spam, phish):
        cases.transition(
            desk.uow(), ANALYST, case.id, cmd(Event.DISCONNECT, reason="x"), desk.policy
        )
    cases.transition(
        desk.uow(),
        ANALYST,
        spam.id,
        cmd(Event.CLOSE, reason="not spam after all", resolution=Resolution.INVALID),
        desk.policy,
    )
    assert rows(desk, Server)[0].status is ServerStatus.DISCONNECTED
    assert [a.kind for a in rows(desk, EnforcementAction)] == [
        ActionKind.DISCONNECT,
        ActionKind.DISCONNECT,
    ]
    cases.transition(desk.uow(), ANALYST, phish.id, cmd(Event.CUSTOMER_CONTACT), desk.policy)
    cases.transition(desk.uow(), ANALYST, phish.id, cmd(Event.RECONNECT, reason="ok"), desk.policy)
    assert rows(desk, Server)[0].status is ServerStatus.ACTIVE
    assert rows(desk, EnforcementAction)[-1].kind is ActionKind.RECONNECT


def test_staff_reclassify_with_a_reason_and_the_deadline_stays(desk: Desk) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c).case
    customer = Actor("customer:x", Role.CUSTOMER, user_id=3, account_id=c.account_id)
    with pytest.raises(PermissionDenied):
        cases.reclassify(desk.uow(), customer, case.id, Category.PHISHING, "no")
    with pytest.raises(ValidationError):
        cases.reclassify(desk.uow(), ANALYST, case.id, Category.PHISHING, " ")
    moved = cases.reclassify(desk.uow(), ANALYST, case.id, Category.PHISHING, "it is a kit")
    assert moved.category is Category.PHISHING
    assert moved.deadline_at == case.deadline_at
    last = cases.get_case(desk.uow(), SYSTEM, case.id).timeline[-1]
    assert last.kind is TimelineKind.RECLASSIFIED
    assert last.data["before"]["category"] == "spam"
    cases.transition(
        desk.uow(),
        ANALYST,
        case.id,
        machine.Command(Event.CLOSE, reason="x", resolution=Resolution.INVALID),
        desk.policy,
    )
    with pytest.raises(InvalidTransition):
        cases.reclassify(desk.uow(), ANALYST, case.id, Category.SPAM, "back")


def test_a_child_abuse_cases_data_is_sealed_from_staff_without_zero_tolerance(desk: Desk) -> None:
    c = factories.customer(desk)
    opened = cases.open_case(
        desk.uow(),
        SYSTEM,
        cases.NewCase(
            account_id=c.account_id,
            server_id=c.server_ids[0],
            category=Category.CSAM,
            summary="reported by a hotline",
            evidence={"url": "http://srv0.c1001.example/x", "sha1": "0" * 40},
        ),
        desk.policy,
    )
    case = cases.get_case(desk.uow(), SYSTEM, opened.case.id)
    analyst = Actor(label="analyst:a@p.example", role=Role.ANALYST, user_id=1)
    legal = Actor(label="legal:l@p.example", role=Role.LEGAL, user_id=2)
    assert cases.sealed_for(analyst, case.category)
    assert not cases.sealed_for(legal, case.category)
    seen_by_analyst = cases.timeline_for(analyst, case)
    seen_by_legal = cases.timeline_for(legal, case)
    # The analyst sees that it happened, not what was recorded; legal sees the evidence.
    assert [e.kind for e in seen_by_analyst] == [e.kind for e in seen_by_legal]
    assert all(e.data == {} for e in seen_by_analyst)
    assert any(e.data.get("evidence") for e in seen_by_legal)
    # Another category is not sealed.
    assert not cases.sealed_for(analyst, Category.SPAM)


def _findings(c: factories.Customer) -> list[cases.NewCase]:
    server = c.server_ids[0]
    return [
        cases.NewCase(c.account_id, Category.SPAM, server_id=server, summary="one", report_ids=[]),
        cases.NewCase(c.account_id, Category.SPAM, server_id=server, summary="two"),
        cases.NewCase(c.account_id, Category.SPAM, resource="http://x.example/", summary="3"),
        cases.NewCase(c.account_id, Category.PHISHING, server_id=server, summary="four"),
        cases.NewCase(c.account_id, Category.SPAM, server_id=server, summary="five"),
        cases.NewCase(c.account_id, Category.CSAM, resource="http://x.example/y", summary="6"),
    ]


def _trail(desk: Desk, opened: list[cases.Opened]) -> list[object]:
    """What the findings came to, by case in order of opening: case ids replaced by their
    place, so that two customers' trails compare."""
    place = {case_id: n for n, case_id in enumerate(dict.fromkeys(o.case.id for o in opened))}
    out: list[object] = [(o.created, place[o.case.id]) for o in opened]
    for case_id, n in place.items():
        events = [e for e in rows(desk, CaseEvent) if e.case_id == case_id]
        audit = [
            a.action
            for a in rows(desk, AuditEntry)
            if a.object_type == "case" and a.object_id == str(case_id)
        ]
        mail = [m.template for m in rows(desk, OutboxMessage) if m.case_id == case_id]
        out.append((n, [(e.kind, e.to_state, e.note) for e in events], audit, mail))
    return out


def test_open_or_attach_many_equals_opening_one_at_a_time(desk: Desk) -> None:
    one = factories.customer(desk, "C1001", base="198.51.100")
    many = factories.customer(desk, "C2002", base="198.51.101")
    singly = [cases.open_case(desk.uow(), ANALYST, new, desk.policy) for new in _findings(one)]
    with desk.uow() as uow:
        batch = cases.open_or_attach_many(uow, ANALYST, _findings(many), desk.policy)
        uow.commit()
    cases.count_opened(batch)
    assert [o.created for o in batch] == [True, False, True, True, False, True]
    assert _trail(desk, batch) == _trail(desk, singly)
    # Nothing lands when the caller does not commit.
    before = len(rows(desk, CaseEvent))
    with desk.uow() as uow:
        cases.open_or_attach_many(uow, ANALYST, _findings(many), desk.policy)
    assert len(rows(desk, CaseEvent)) == before
