"""The users of a customer account (R1: they act for the account).

Who manages them: staff with USERS_MANAGE, or a user of that same account whose account role is
owner or manager (looked up afresh, so a demotion takes effect on the next request). Anyone who
may manage them may also list them, and so may any staff member with INVENTORY_VIEW. Only an
owner (or staff) grants or takes the owner role, and an account always keeps one active owner.
A customer naming another account's user or account is told it does not exist.

An invitation creates the user with no password and mails a one-time link to choose one; once
it has expired, the same user can ask for a password reset, which mails a new link.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from abusedesk.accounts.choices import AccountRole, Role, TokenPurpose
from abusedesk.accounts.models import ApiToken, PasswordToken, User
from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.accounts.settings import AuthSettings
from abusedesk.accounts.signin import issue_password_token, password_link
from abusedesk.accounts.validators import normalise_email
from abusedesk.errors import Conflict, NotFound, PermissionDenied, ValidationError
from abusedesk.inventory.choices import AccountStatus
from abusedesk.inventory.models import Account
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.outbox import queue_for_user
from abusedesk.store.uow import UnitOfWork

NAME_MAX = 200


def list_members(
    uow: UnitOfWork, actor: Actor, account_id: int, *, include_removed: bool = False
) -> list[User]:
    """The account's users, owners first. Every user of the account may see who else acts for
    it (R1); changing them is for its owners and managers."""
    with uow.reading():
        if actor.is_staff:
            _require_manager(uow.session, actor, account_id, Permission.INVENTORY_VIEW)
        elif actor.account_id != account_id:
            raise NotFound("no such account")
        query = sa.select(User).where(User.account_id == account_id)
        if not include_removed:
            query = query.where(User.is_active.is_(True))
        rank = sa.case(
            (User.account_role == AccountRole.OWNER, 0),
            (User.account_role == AccountRole.MANAGER, 1),
            else_=2,
        )
        return list(uow.session.scalars(query.order_by(rank, User.email)))


def invite_member(
    uow: UnitOfWork,
    actor: Actor,
    account_id: int,
    email: str,
    name: str,
    account_role: AccountRole,
    base_url: str,
    auth: AuthSettings,
) -> User:
    """A new user of the account, without a password, and a mail to it with a link to choose
    one (valid for `auth.invitation_ttl`). Raises Conflict when the e-mail has a user."""
    address = normalise_email(email)
    name = name.strip()
    if len(name) > NAME_MAX:
        raise ValidationError(f"a name has at most {NAME_MAX} characters")
    role = AccountRole(account_role)
    with uow:
        session = uow.session
        now = uow.clock.now()
        me = _require_manager(session, actor, account_id, Permission.USERS_MANAGE)
        if role is AccountRole.OWNER:
            _require_owner(me)
        account = session.get(Account, account_id)
        assert account is not None  # _require_manager found it
        if account.status is AccountStatus.TERMINATED:
            raise Conflict(f"account {account.reference} is terminated")
        if session.scalar(sa.select(User.id).where(User.email == address)):
            raise Conflict(f"a user {address} exists already")
        user = User(
            email=address,
            name=name,
            role=Role.CUSTOMER,
            account_id=account_id,
            account_role=role,
            password_hash=None,
            created_at=now,
        )
        session.add(user)
        session.flush()
        token, record = issue_password_token(
            session, user.id, TokenPurpose.INVITATION, now, auth.invitation_ttl
        )
        queue_for_user(
            session,
            address,
            MessageTemplate.INVITATION,
            {
                "name": name,
                "email": address,
                "link": password_link(base_url, token),
                "deadline": record.expires_at.isoformat(),
                "account_name": account.name,
                "account_reference": account.reference,
                # A colleague is named; staff invite on the desk's behalf.
                "invited_by": (me.name or me.email) if me is not None else "",
                "language": account.language,
            },
            now,
        )
        uow.audit(
            actor.label,
            "member.invite",
            "user",
            user.id,
            {"account_id": account_id, "email": address, "account_role": role.value},
        )
        uow.commit()
        return user


def remove_member(uow: UnitOfWork, actor: Actor, user_id: int) -> None:
    """Deactivate a user of the account: its sessions end, its API tokens and unused links are
    void. The record stays, so the audit log keeps naming who did what."""
    with uow:
        session = uow.session
        now = uow.clock.now()
        user = _member(session, actor, user_id)
        me = _require_manager(session, actor, user.account_id, Permission.USERS_MANAGE)
        if not user.is_active:
            return
        if user.account_role is AccountRole.OWNER:
            _require_owner(me)
            _keep_an_owner(session, user)
        user.is_active = False
        user.session_epoch += 1
        session.execute(
            sa.update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        session.execute(
            sa.update(PasswordToken)
            .where(PasswordToken.user_id == user.id, PasswordToken.used_at.is_(None))
            .values(used_at=now)
        )
        uow.audit(
            actor.label,
            "member.remove",
            "user",
            user.id,
            {"account_id": user.account_id, "email": user.email},
        )
        uow.commit()


def set_member_role(uow: UnitOfWork, actor: Actor, user_id: int, account_role: AccountRole) -> User:
    role = AccountRole(account_role)
    with uow:
        session = uow.session
        user = _member(session, actor, user_id)
        me = _require_manager(session, actor, user.account_id, Permission.USERS_MANAGE)
        if not user.is_active:
            raise Conflict(f"{user.email} has been removed from the account")
        old = user.account_role
        if role is old:
            return user
        if AccountRole.OWNER in (role, old):
            _require_owner(me)
        if old is AccountRole.OWNER:
            _keep_an_owner(session, user)
        user.account_role = role
        uow.audit(
            actor.label,
            "member.role",
            "user",
            user.id,
            {"account_id": user.account_id, "from": old.value if old else None, "to": role.value},
        )
        uow.commit()
        return user


def _require_manager(
    session: Session, actor: Actor, account_id: int | None, staff_permission: Permission
) -> User | None:
    """The acting customer user, when it may manage this account's users; None for staff with
    `staff_permission`. Raises NotFound or PermissionDenied."""
    if actor.is_staff:
        actor.require(staff_permission)
        if account_id is None or session.get(Account, account_id) is None:
            raise NotFound("no such account")
        return None
    if account_id is None or actor.account_id != account_id:
        raise NotFound("no such account")
    me = session.get(User, actor.user_id) if actor.user_id is not None else None
    if (
        me is None
        or not me.is_active
        or me.account_id != account_id
        or me.account_role is None
        or not me.account_role.manages_members
    ):
        raise PermissionDenied("only the account's owners and managers manage its users")
    return me


def _require_owner(me: User | None) -> None:
    if me is not None and me.account_role is not AccountRole.OWNER:
        raise PermissionDenied("only an owner grants or takes the owner role")


def _member(session: Session, actor: Actor, user_id: int) -> User:
    user = session.scalar(sa.select(User).where(User.id == user_id).with_for_update())
    if (
        user is None
        or user.role is not Role.CUSTOMER
        or (not actor.is_staff and user.account_id != actor.account_id)
    ):
        raise NotFound("no such user")
    return user


def _keep_an_owner(session: Session, leaving: User) -> None:
    """Refuse to take the last active owner from an account. The owners' rows are locked, so
    two owners demoting each other at once cannot both succeed."""
    owners = session.scalars(
        sa.select(User.id)
        .where(
            User.account_id == leaving.account_id,
            User.account_role == AccountRole.OWNER,
            User.is_active.is_(True),
        )
        .with_for_update()
    ).all()
    if not set(owners) - {leaving.id}:
        raise Conflict(
            f"{leaving.email} is the account's last owner: make another user owner first"
        )
