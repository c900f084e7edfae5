"""An account's users (R1): who may list, invite, remove and re-role them, and the owner rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
import sqlalchemy as sa

from abusedesk.accounts import members, signin
from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.accounts.models import ApiToken, User
from abusedesk.accounts.permissions import Actor
from abusedesk.accounts.service import authenticate_token, issue_token
from abusedesk.accounts.settings import AuthSettings
from abusedesk.audit.models import AuditEntry
from abusedesk.bootstrap import Desk
from abusedesk.clock import FakeClock
from abusedesk.errors import Conflict, NotFound, PermissionDenied, ValidationError
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from tests import factories
from tests.factories import PASSWORD

AUTH = AuthSettings()
BASE_URL = "https://abuse.provider.example"


@dataclass
class People:
    account_id: int
    other_account_id: int
    owner: Actor
    manager: Actor
    member: Actor
    stranger: Actor  # the owner of another account
    admin: Actor
    analyst: Actor


@pytest.fixture
def people(desk: Desk) -> People:
    c1 = factories.customer(desk)
    c2 = factories.customer(desk, "C2002", base="203.0.113")

    def customer_user(email: str, role: AccountRole, reference: str = "C1001") -> Actor:
        return factories.user(desk, email, account_reference=reference, account_role=role)

    return People(
        c1.account_id,
        c2.account_id,
        customer_user("owner@c1001.example", AccountRole.OWNER),
        customer_user("manager@c1001.example", AccountRole.MANAGER),
        customer_user("member@c1001.example", AccountRole.MEMBER),
        customer_user("owner@c2002.example", AccountRole.OWNER, "C2002"),
        factories.user(desk, "admin@provider.example", role=Role.ADMIN),
        factories.user(desk, "analyst@provider.example", role=Role.ANALYST),
    )


def uid(actor: Actor) -> int:
    assert actor.user_id is not None
    return actor.user_id


def row(desk: Desk, user_id: int) -> User:
    with desk.uow() as uow:
        user = uow.session.get(User, user_id)
        assert user is not None
        return user


def actions(desk: Desk, prefix: str) -> list[str]:
    with desk.uow() as uow:
        return [
            a
            for a in uow.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.seq))
            if a.startswith(prefix)
        ]


def invite(desk: Desk, actor: Actor, email: str, role: AccountRole = AccountRole.MEMBER) -> User:
    return members.invite_member(
        desk.uow(), actor, actor.account_id or 1, email, "New Person", role, BASE_URL, AUTH
    )


# -- listing --------------------------------------------------------------------------------


def test_owners_managers_and_staff_list_the_users_owners_first(desk: Desk, people: People) -> None:
    expected = ["owner@c1001.example", "manager@c1001.example", "member@c1001.example"]
    for actor in (people.owner, people.manager, people.analyst, people.admin):
        listed = members.list_members(desk.uow(), actor, people.account_id)
        assert [u.email for u in listed] == expected


def test_a_member_sees_who_acts_for_the_account_and_another_account_does_not_exist(
    desk: Desk, people: People
) -> None:
    seen = members.list_members(desk.uow(), people.member, people.account_id)
    assert people.member.user_id in {u.id for u in seen}
    assert {u.account_id for u in seen} == {people.account_id}
    with pytest.raises(NotFound):
        members.list_members(desk.uow(), people.stranger, people.account_id)
    with pytest.raises(NotFound):
        members.list_members(desk.uow(), people.admin, 999_999)


# -- inviting -------------------------------------------------------------------------------


def test_an_invitation_makes_a_user_without_a_password_and_mails_a_link(
    desk: Desk, people: People
) -> None:
    user = invite(desk, people.manager, "  New@C1001.example ")
    assert (user.email, user.role, user.account_id, user.account_role) == (
        "new@c1001.example",
        Role.CUSTOMER,
        people.account_id,
        AccountRole.MEMBER,
    )
    assert user.password_hash is None
    with desk.uow() as uow:
        [mail] = uow.session.scalars(sa.select(OutboxMessage))
    assert mail.template is MessageTemplate.INVITATION
    assert mail.recipients == ["new@c1001.example"]
    assert mail.context["invited_by"] == "Manager"
    assert mail.context["account_reference"] == "C1001"
    assert mail.context["deadline"] == (desk.clock.now() + AUTH.invitation_ttl).isoformat()
    token = mail.context["link"].removeprefix(f"{BASE_URL}/password-reset/")

    assert signin.check_password_token(desk.uow(), token) == "new@c1001.example"
    assert signin.sign_in(desk.uow(), "new@c1001.example", PASSWORD, None, AUTH).outcome is (
        signin.SignInOutcome.BAD_CREDENTIALS
    )
    signin.reset_password(desk.uow(), token, PASSWORD, AUTH)
    ok = signin.sign_in(desk.uow(), "new@c1001.example", PASSWORD, None, AUTH)
    assert ok.outcome is signin.SignInOutcome.OK
    assert actions(desk, "member.") == ["member.invite"]
    assert actions(desk, "invitation.") == ["invitation.accept"]


def test_an_invitation_expires(desk: Desk, people: People, clock: FakeClock) -> None:
    invite(desk, people.owner, "late@c1001.example")
    with desk.uow() as uow:
        [mail] = uow.session.scalars(sa.select(OutboxMessage))
    token = mail.context["link"].rpartition("/")[2]
    clock.advance(AUTH.invitation_ttl + timedelta(seconds=1))
    with pytest.raises(ValidationError, match="expired"):
        signin.reset_password(desk.uow(), token, PASSWORD, AUTH)


def test_only_an_owner_or_staff_invites_an_owner(desk: Desk, people: People) -> None:
    with pytest.raises(PermissionDenied):
        invite(desk, people.manager, "boss@c1001.example", AccountRole.OWNER)
    assert invite(desk, people.owner, "boss@c1001.example", AccountRole.OWNER).account_role is (
        AccountRole.OWNER
    )
    staff_made = members.invite_member(
        desk.uow(),
        people.admin,
        people.account_id,
        "boss2@c1001.example",
        "",
        AccountRole.OWNER,
        BASE_URL,
        AUTH,
    )
    assert staff_made.account_role is AccountRole.OWNER


def test_who_may_not_invite(desk: Desk, people: People) -> None:
    with pytest.raises(PermissionDenied):
        invite(desk, people.member, "x@c1001.example")
    with pytest.raises(PermissionDenied):  # staff without USERS_MANAGE
        members.invite_member(
            desk.uow(),
            people.analyst,
            people.account_id,
            "x@c1001.example",
            "",
            AccountRole.MEMBER,
            BASE_URL,
            AUTH,
        )
    with pytest.raises(NotFound):
        members.invite_member(
            desk.uow(),
            people.stranger,
            people.account_id,
            "x@c1001.example",
            "",
            AccountRole.MEMBER,
            BASE_URL,
            AUTH,
        )
    with desk.uow() as uow:
        assert uow.session.scalar(sa.select(User).where(User.email == "x@c1001.example")) is None


def test_an_address_with_a_user_already_or_no_address_is_refused(
    desk: Desk, people: People
) -> None:
    with pytest.raises(Conflict):
        invite(desk, people.owner, "Member@c1001.example")
    with pytest.raises(Conflict):
        invite(desk, people.owner, "analyst@provider.example")
    with pytest.raises(ValidationError):
        invite(desk, people.owner, "not-an-address")


# -- removing -------------------------------------------------------------------------------


def test_removing_a_member_ends_its_sessions_tokens_and_sign_in(desk: Desk, people: People) -> None:
    session = signin.sign_in(desk.uow(), "member@c1001.example", PASSWORD, None, AUTH)
    token = issue_token(desk.uow(), people.member, "member@c1001.example", "script").token
    members.remove_member(desk.uow(), people.manager, uid(people.member))

    user = row(desk, uid(people.member))
    assert not user.is_active
    assert user.session_epoch == session.session_epoch + 1
    assert signin.actor_for_session(desk.uow(), uid(people.member), session.session_epoch) is None
    assert authenticate_token(desk.uow(), token) is None
    with desk.uow() as uow:  # revoked for good, not only refused while the user is inactive
        assert uow.session.scalar(sa.select(ApiToken.revoked_at)) == desk.clock.now()
    assert signin.sign_in(desk.uow(), "member@c1001.example", PASSWORD, None, AUTH).outcome is (
        signin.SignInOutcome.BAD_CREDENTIALS
    )
    assert [u.email for u in members.list_members(desk.uow(), people.owner, people.account_id)] == [
        "owner@c1001.example",
        "manager@c1001.example",
    ]
    listed = members.list_members(desk.uow(), people.owner, people.account_id, include_removed=True)
    assert len(listed) == 3
    assert actions(desk, "member.") == ["member.remove"]


def test_an_owner_is_removed_only_by_an_owner_and_never_the_last(
    desk: Desk, people: People
) -> None:
    with pytest.raises(PermissionDenied):
        members.remove_member(desk.uow(), people.manager, uid(people.owner))
    with pytest.raises(Conflict, match="last owner"):
        members.remove_member(desk.uow(), people.owner, uid(people.owner))
    with pytest.raises(Conflict, match="last owner"):
        members.remove_member(desk.uow(), people.admin, uid(people.owner))
    assert row(desk, uid(people.owner)).is_active

    members.set_member_role(desk.uow(), people.owner, uid(people.manager), AccountRole.OWNER)
    members.remove_member(desk.uow(), people.manager, uid(people.owner))
    assert not row(desk, uid(people.owner)).is_active


def test_a_member_may_not_remove_and_others_users_do_not_exist(desk: Desk, people: People) -> None:
    with pytest.raises(PermissionDenied):
        members.remove_member(desk.uow(), people.member, uid(people.manager))
    with pytest.raises(NotFound):
        members.remove_member(desk.uow(), people.stranger, uid(people.member))
    with pytest.raises(NotFound):  # staff are not an account's members
        members.remove_member(desk.uow(), people.owner, uid(people.analyst))
    with pytest.raises(NotFound):
        members.remove_member(desk.uow(), people.owner, 999_999)
    assert row(desk, uid(people.member)).is_active


# -- roles ----------------------------------------------------------------------------------


def test_managers_promote_and_demote_below_owner(desk: Desk, people: People) -> None:
    promoted = members.set_member_role(
        desk.uow(), people.manager, uid(people.member), AccountRole.MANAGER
    )
    assert promoted.account_role is AccountRole.MANAGER
    members.set_member_role(desk.uow(), people.manager, uid(people.member), AccountRole.MEMBER)
    with pytest.raises(PermissionDenied):
        members.set_member_role(desk.uow(), people.manager, uid(people.member), AccountRole.OWNER)
    with pytest.raises(PermissionDenied):
        members.set_member_role(desk.uow(), people.manager, uid(people.owner), AccountRole.MEMBER)
    with pytest.raises(PermissionDenied):
        members.set_member_role(desk.uow(), people.member, uid(people.member), AccountRole.MANAGER)
    with pytest.raises(NotFound):
        members.set_member_role(
            desk.uow(), people.stranger, uid(people.member), AccountRole.MANAGER
        )
    assert row(desk, uid(people.member)).account_role is AccountRole.MEMBER
    assert actions(desk, "member.") == ["member.role", "member.role"]


def test_the_last_owner_cannot_be_demoted_but_one_of_two_can(desk: Desk, people: People) -> None:
    with pytest.raises(Conflict, match="last owner"):
        members.set_member_role(desk.uow(), people.owner, uid(people.owner), AccountRole.MANAGER)
    members.set_member_role(desk.uow(), people.admin, uid(people.member), AccountRole.OWNER)
    members.set_member_role(desk.uow(), people.owner, uid(people.owner), AccountRole.MANAGER)
    assert row(desk, uid(people.owner)).account_role is AccountRole.MANAGER
    # The demoted owner lost the right to touch owners at once.
    with pytest.raises(PermissionDenied):
        members.set_member_role(desk.uow(), people.owner, uid(people.member), AccountRole.MEMBER)


def test_a_removed_user_keeps_its_role(desk: Desk, people: People) -> None:
    members.remove_member(desk.uow(), people.owner, uid(people.member))
    with pytest.raises(Conflict, match="removed"):
        members.set_member_role(desk.uow(), people.owner, uid(people.member), AccountRole.MANAGER)
