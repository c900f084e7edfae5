"""Signing in against a real database: passwords, lockout, TOTP, sessions and reset links."""

from __future__ import annotations

import json
from datetime import timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy

import pytest
import sqlalchemy as sa

from abusedesk.accounts import signin
from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.accounts.models import PasswordToken, User
from abusedesk.accounts.permissions import Actor
from abusedesk.accounts.service import issue_token
from abusedesk.accounts.settings import AuthSettings
from abusedesk.accounts.signin import SignInOutcome, sign_in
from abusedesk.accounts.totp import STEP_SECONDS, code_at, new_totp_secret
from abusedesk.audit.models import AuditEntry
from abusedesk.bootstrap import Desk
from abusedesk.clock import FakeClock
from abusedesk.errors import Conflict, NotFound, PermissionDenied, ValidationError
from abusedesk.notify.choices import MessageTemplate, OutboxState
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.service import deliver_due
from abusedesk.notify.transport import FileTransport
from tests import factories
from tests.factories import PASSWORD

AUTH = AuthSettings()
BASE_URL = "https://abuse.provider.example"
STEP = timedelta(seconds=STEP_SECONDS)
NEW_PASSWORD = "Battery-Staple-42"


def user_row(desk: Desk, email: str) -> User:
    with desk.uow() as uow:
        user = uow.session.scalar(sa.select(User).where(User.email == email))
        assert user is not None
        return user


def audit(desk: Desk, action: str | None = None) -> list[AuditEntry]:
    with desk.uow() as uow:
        query = sa.select(AuditEntry).order_by(AuditEntry.seq)
        if action:
            query = query.where(AuditEntry.action == action)
        return list(uow.session.scalars(query))


def mails(desk: Desk) -> list[OutboxMessage]:
    with desk.uow() as uow:
        return list(uow.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def link_token(message: OutboxMessage) -> str:
    link = message.context["link"]
    assert link.startswith(f"{BASE_URL}/password-reset/")
    return str(link.rpartition("/")[2])


def enrol(desk: Desk, actor: Actor) -> str:
    secret = new_totp_secret()
    signin.enable_totp(desk.uow(), actor, secret, code_at(secret, desk.clock.now()))
    return secret


@pytest.fixture
def customer(desk: Desk) -> Actor:
    factories.customer(desk)
    return factories.user(
        desk, "ann@c1001.example", account_reference="C1001", account_role=AccountRole.OWNER
    )


# -- passwords and lockout ------------------------------------------------------------------


def test_the_right_password_signs_in_and_a_wrong_one_does_not(desk: Desk, customer: Actor) -> None:
    ok = sign_in(desk.uow(), "  Ann@C1001.example ", PASSWORD, None, AUTH)
    assert ok.outcome is SignInOutcome.OK
    assert ok.actor == customer
    assert ok.session_epoch == 0
    assert user_row(desk, "ann@c1001.example").last_login_at == desk.clock.now()

    bad = sign_in(desk.uow(), "ann@c1001.example", PASSWORD + "x", None, AUTH)
    assert bad.outcome is SignInOutcome.BAD_CREDENTIALS
    assert bad.actor is None
    assert user_row(desk, "ann@c1001.example").failed_logins == 1
    assert [
        (e.actor, e.action, e.object_id) for e in audit(desk) if e.action.startswith("signin.")
    ] == [
        ("customer:ann@c1001.example", "signin.ok", str(customer.user_id)),
        # Whoever typed a wrong password is not known to be Ann.
        ("anonymous", "signin.failed", str(customer.user_id)),
    ]


def test_an_unknown_email_fails_alike_after_a_password_check(
    desk: Desk, customer: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    real = signin.spend_like_a_check
    monkeypatch.setattr(signin, "spend_like_a_check", lambda p: checks.append(p) or real(p))
    result = sign_in(desk.uow(), "nobody@c1001.example", PASSWORD, None, AUTH)
    assert result == signin.SignInResult(SignInOutcome.BAD_CREDENTIALS)
    assert checks == [PASSWORD]  # the same cost as a real user's check
    [entry] = audit(desk, "signin.failed")
    assert entry.details == {"email": "nobody@c1001.example", "reason": "unknown e-mail"}


def test_an_inactive_user_or_one_without_a_password_cannot_sign_in(
    desk: Desk, customer: Actor
) -> None:
    factories.user(desk, "invited@c1001.example", account_reference="C1001", password=None)
    assert sign_in(desk.uow(), "invited@c1001.example", "", None, AUTH).outcome is (
        SignInOutcome.BAD_CREDENTIALS
    )
    with desk.uow() as uow:
        uow.session.execute(sa.update(User).values(is_active=False))
        uow.commit()
    assert sign_in(desk.uow(), "ann@c1001.example", PASSWORD, None, AUTH).outcome is (
        SignInOutcome.BAD_CREDENTIALS
    )


def test_lockout_after_the_failures_allowed_and_unlock_when_it_passes(
    desk: Desk, customer: Actor, clock: FakeClock
) -> None:
    email = "ann@c1001.example"
    for _ in range(AUTH.max_failed_logins - 1):
        assert sign_in(desk.uow(), email, "wrong", None, AUTH).outcome is (
            SignInOutcome.BAD_CREDENTIALS
        )
    locked = sign_in(desk.uow(), email, "wrong", None, AUTH)
    until = clock.now() + AUTH.lockout
    assert locked == signin.SignInResult(SignInOutcome.LOCKED, locked_until=until)

    # Locked even with the right password; trying again does not extend the lock.
    clock.advance(AUTH.lockout - timedelta(seconds=1))
    again = sign_in(desk.uow(), email, PASSWORD, None, AUTH)
    assert again.outcome is SignInOutcome.LOCKED
    assert again.locked_until == until
    assert again.actor is None

    clock.advance(timedelta(seconds=1))
    ok = sign_in(desk.uow(), email, PASSWORD, None, AUTH)
    assert ok.outcome is SignInOutcome.OK
    row = user_row(desk, email)
    assert (row.failed_logins, row.locked_until) == (0, None)
    assert len(audit(desk, "signin.locked")) == 1


def test_after_a_lock_passes_the_next_failure_locks_again(
    desk: Desk, customer: Actor, clock: FakeClock
) -> None:
    auth = AuthSettings(max_failed_logins=2, lockout=timedelta(minutes=5))
    email = "ann@c1001.example"
    sign_in(desk.uow(), email, "wrong", None, auth)
    assert sign_in(desk.uow(), email, "wrong", None, auth).outcome is SignInOutcome.LOCKED
    clock.advance(timedelta(minutes=5))
    relocked = sign_in(desk.uow(), email, "wrong", None, auth)
    assert relocked.outcome is SignInOutcome.LOCKED
    assert relocked.locked_until == clock.now() + timedelta(minutes=5)


def test_a_rehash_is_made_when_the_stored_hash_is_weaker(desk: Desk, customer: Actor) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with desk.uow() as uow:
        uow.session.execute(sa.update(User).values(password_hash=weak))
        uow.commit()
    assert sign_in(desk.uow(), "ann@c1001.example", PASSWORD, None, AUTH).outcome is (
        SignInOutcome.OK
    )
    renewed = user_row(desk, "ann@c1001.example").password_hash
    assert renewed != weak
    assert sign_in(desk.uow(), "ann@c1001.example", PASSWORD, None, AUTH).outcome is (
        SignInOutcome.OK
    )


# -- TOTP -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.ADMIN, Role.LEGAL])
def test_admin_and_legal_must_enrol_before_anything_else(desk: Desk, role: Role) -> None:
    staff = factories.user(desk, f"{role.value}@provider.example", role=role)
    result = sign_in(desk.uow(), staff_email(role), PASSWORD, None, AUTH)
    assert result.outcome is SignInOutcome.TOTP_ENROLMENT_REQUIRED
    assert result.actor == staff
    assert sign_in(desk.uow(), staff_email(role), "wrong", None, AUTH).outcome is (
        SignInOutcome.BAD_CREDENTIALS
    )

    secret = new_totp_secret()
    with pytest.raises(ValidationError, match="does not match"):
        signin.enable_totp(desk.uow(), staff, secret, "000000")
    code = code_at(secret, desk.clock.now())
    signin.enable_totp(desk.uow(), staff, secret, code)
    assert sign_in(desk.uow(), staff_email(role), PASSWORD, None, AUTH).outcome is (
        SignInOutcome.TOTP_REQUIRED
    )
    # The code that proved the enrolment is used up.
    assert sign_in(desk.uow(), staff_email(role), PASSWORD, code, AUTH).outcome is (
        SignInOutcome.TOTP_INVALID
    )


def staff_email(role: Role) -> str:
    return f"{role.value}@provider.example"


def test_an_analyst_without_totp_signs_in_with_the_password(desk: Desk) -> None:
    factories.user(desk, "analyst@provider.example", role=Role.ANALYST)
    result = sign_in(desk.uow(), "analyst@provider.example", PASSWORD, None, AUTH)
    assert result.outcome is SignInOutcome.OK


def test_a_code_works_once_then_the_next_one(desk: Desk, customer: Actor, clock: FakeClock) -> None:
    secret = enrol(desk, customer)
    email = "ann@c1001.example"
    assert sign_in(desk.uow(), email, PASSWORD, None, AUTH).outcome is (SignInOutcome.TOTP_REQUIRED)
    clock.advance(STEP)
    code = code_at(secret, clock.now())
    ok = sign_in(desk.uow(), email, PASSWORD, code, AUTH)
    assert ok.outcome is SignInOutcome.OK
    assert ok.actor == customer
    assert sign_in(desk.uow(), email, PASSWORD, code, AUTH).outcome is (SignInOutcome.TOTP_INVALID)
    clock.advance(STEP)
    assert sign_in(desk.uow(), email, PASSWORD, code_at(secret, clock.now()), AUTH).outcome is (
        SignInOutcome.OK
    )
    [entry, *_] = audit(desk, "signin.ok")
    assert entry.details == {"totp": True}


def test_a_wrong_password_with_a_right_code_is_a_wrong_password(
    desk: Desk, customer: Actor, clock: FakeClock
) -> None:
    secret = enrol(desk, customer)
    clock.advance(STEP)
    result = sign_in(desk.uow(), "ann@c1001.example", "wrong", code_at(secret, clock.now()), AUTH)
    assert result.outcome is SignInOutcome.BAD_CREDENTIALS


def test_wrong_codes_count_toward_the_lockout(
    desk: Desk, customer: Actor, clock: FakeClock
) -> None:
    enrol(desk, customer)
    auth = AuthSettings(max_failed_logins=3)
    outcomes = [
        sign_in(desk.uow(), "ann@c1001.example", PASSWORD, "123456", auth).outcome for _ in range(3)
    ]
    # (A guess of 123456 that happens to be right would make this flaky: one in a million.)
    assert outcomes == [
        SignInOutcome.TOTP_INVALID,
        SignInOutcome.TOTP_INVALID,
        SignInOutcome.LOCKED,
    ]


def test_enrolling_twice_is_refused(desk: Desk, customer: Actor) -> None:
    enrol(desk, customer)
    other = new_totp_secret()
    with pytest.raises(Conflict):
        signin.enable_totp(desk.uow(), customer, other, code_at(other, desk.clock.now()))
    with pytest.raises(ValidationError):
        signin.enable_totp(desk.uow(), customer, "not a secret", "123456")


def test_switching_totp_off(desk: Desk, customer: Actor, clock: FakeClock) -> None:
    legal = factories.user(desk, "legal@provider.example", role=Role.LEGAL)
    admin = factories.user(desk, "admin@provider.example", role=Role.ADMIN)
    analyst = factories.user(desk, "analyst@provider.example", role=Role.ANALYST)
    factories.customer(desk, "C2002", base="203.0.113")
    stranger = factories.user(
        desk, "eve@c2002.example", account_reference="C2002", account_role=AccountRole.OWNER
    )
    enrol(desk, customer)
    enrol(desk, legal)

    # A customer may drop an optional second factor; a stranger cannot even see the user.
    assert customer.user_id is not None
    assert legal.user_id is not None
    with pytest.raises(NotFound):
        signin.disable_totp(desk.uow(), stranger, customer.user_id)
    signin.disable_totp(desk.uow(), customer, customer.user_id)
    assert sign_in(desk.uow(), "ann@c1001.example", PASSWORD, None, AUTH).outcome is (
        SignInOutcome.OK
    )

    # Legal may not drop a required one, nor may an analyst reset it; an admin may.
    with pytest.raises(PermissionDenied):
        signin.disable_totp(desk.uow(), legal, legal.user_id)
    with pytest.raises(PermissionDenied):
        signin.disable_totp(desk.uow(), analyst, legal.user_id)
    ok = sign_in(desk.uow(), "legal@provider.example", PASSWORD, code_at_next(desk, clock), AUTH)
    assert ok.outcome is SignInOutcome.OK
    signin.disable_totp(desk.uow(), admin, legal.user_id)
    # The reset ends legal's sessions and asks for a new enrolment.
    assert signin.actor_for_session(desk.uow(), legal.user_id, ok.session_epoch) is None
    assert sign_in(desk.uow(), "legal@provider.example", PASSWORD, None, AUTH).outcome is (
        SignInOutcome.TOTP_ENROLMENT_REQUIRED
    )
    assert [e.action for e in audit(desk) if e.action.startswith("totp.")] == [
        "totp.enable",
        "totp.enable",
        "totp.disable",
        "totp.reset",
    ]


def code_at_next(desk: Desk, clock: FakeClock) -> str:
    """The legal user's code one step on (the enrolment's own is used up)."""
    clock.advance(STEP)
    with desk.uow() as uow:
        secret = uow.session.scalar(
            sa.select(User.totp_secret).where(User.email == "legal@provider.example")
        )
    assert secret is not None
    return code_at(secret, clock.now())


# -- sessions -------------------------------------------------------------------------------


def test_a_session_holds_until_its_epoch_passes(desk: Desk, customer: Actor) -> None:
    assert customer.user_id is not None
    ok = sign_in(desk.uow(), "ann@c1001.example", PASSWORD, None, AUTH)
    assert signin.actor_for_session(desk.uow(), customer.user_id, ok.session_epoch) == customer
    assert signin.actor_for_session(desk.uow(), customer.user_id, ok.session_epoch + 1) is None
    assert signin.actor_for_session(desk.uow(), 999_999, 0) is None

    signin.sign_out_everywhere(desk.uow(), customer)
    assert signin.actor_for_session(desk.uow(), customer.user_id, ok.session_epoch) is None
    again = sign_in(desk.uow(), "ann@c1001.example", PASSWORD, None, AUTH)
    assert again.session_epoch == ok.session_epoch + 1
    assert signin.actor_for_session(desk.uow(), customer.user_id, again.session_epoch) == customer

    with desk.uow() as uow:
        uow.session.execute(sa.update(User).values(is_active=False))
        uow.commit()
    assert signin.actor_for_session(desk.uow(), customer.user_id, again.session_epoch) is None


# -- password reset -------------------------------------------------------------------------


def test_a_reset_mail_goes_to_that_user_alone_and_only_if_it_exists(
    desk: Desk, customer: Actor
) -> None:
    signin.request_password_reset(desk.uow(), "nobody@c1001.example", BASE_URL, AUTH)
    signin.request_password_reset(desk.uow(), "not an address", BASE_URL, AUTH)
    assert mails(desk) == []

    signin.request_password_reset(desk.uow(), " ANN@c1001.example", BASE_URL, AUTH)
    [mail] = mails(desk)
    assert mail.template is MessageTemplate.PASSWORD_RESET
    assert mail.recipients == ["ann@c1001.example"]  # not the account's contacts
    assert mail.audiences == ["user"]
    assert mail.case_id is None
    assert mail.context["deadline"] == (desk.clock.now() + AUTH.password_reset_ttl).isoformat()
    assert signin.check_password_token(desk.uow(), link_token(mail)) == "ann@c1001.example"
    with desk.uow() as uow:
        [stored] = uow.session.scalars(sa.select(PasswordToken))
        assert stored.token_hash != link_token(mail)  # only the hash is kept
        assert stored.token_hash == signin.token_digest(link_token(mail))


def test_the_reset_mail_is_delivered_rendered_and_then_forgets_the_link(
    desk: Desk, customer: Actor
) -> None:
    signin.request_password_reset(desk.uow(), "ann@c1001.example", BASE_URL, AUTH)
    [queued] = mails(desk)
    token = link_token(queued)
    directory = desk.settings.home / "mail"
    result = deliver_due(desk.uow(), FileTransport(directory), desk.settings, desk.policy)
    assert result.sent == 1
    [path] = directory.iterdir()
    mail = BytesParser(_class=EmailMessage, policy=default_policy).parsebytes(path.read_bytes())
    assert mail["To"] == "ann@c1001.example"
    assert str(mail["Subject"]) == "Reset your password for Abuse Desk"
    body = mail.get_body(("plain",))
    assert body is not None
    assert f"{BASE_URL}/password-reset/{token}" in body.get_content()
    html = mail.get_body(("html",))
    assert html is not None
    assert f'href="{BASE_URL}/password-reset/{token}"' in html.get_content()

    [sent] = mails(desk)
    assert sent.state is OutboxState.SENT
    assert token not in json.dumps(sent.context)
    # The link still works: it is the outbox that forgot it, not the token table.
    assert signin.check_password_token(desk.uow(), token) == "ann@c1001.example"


def test_a_reset_link_works_once_and_ends_every_session(
    desk: Desk, customer: Actor, clock: FakeClock
) -> None:
    assert customer.user_id is not None
    before = sign_in(desk.uow(), "ann@c1001.example", PASSWORD, None, AUTH)
    for _ in range(AUTH.max_failed_logins):
        sign_in(desk.uow(), "ann@c1001.example", "wrong", None, AUTH)
    signin.request_password_reset(desk.uow(), "ann@c1001.example", BASE_URL, AUTH)
    token = link_token(mails(desk)[0])

    with pytest.raises(ValidationError, match="characters"):
        signin.reset_password(desk.uow(), token, "short", AUTH)
    actor = signin.reset_password(desk.uow(), token, NEW_PASSWORD, AUTH)
    assert actor == customer

    with pytest.raises(ValidationError, match="used"):
        signin.check_password_token(desk.uow(), token)
    with pytest.raises(ValidationError, match="used"):
        signin.reset_password(desk.uow(), token, "Another-Password-7", AUTH)
    assert signin.actor_for_session(desk.uow(), customer.user_id, before.session_epoch) is None
    # The lockout is lifted, and only the new password works.
    assert sign_in(desk.uow(), "ann@c1001.example", PASSWORD, None, AUTH).outcome is (
        SignInOutcome.BAD_CREDENTIALS
    )
    assert sign_in(desk.uow(), "ann@c1001.example", NEW_PASSWORD, None, AUTH).outcome is (
        SignInOutcome.OK
    )
    [entry] = audit(desk, "password.reset")
    assert entry.actor == "customer:ann@c1001.example"


def test_a_reset_link_expires(desk: Desk, customer: Actor, clock: FakeClock) -> None:
    signin.request_password_reset(desk.uow(), "ann@c1001.example", BASE_URL, AUTH)
    token = link_token(mails(desk)[0])
    clock.advance(AUTH.password_reset_ttl - timedelta(seconds=1))
    assert signin.check_password_token(desk.uow(), token) == "ann@c1001.example"
    clock.advance(timedelta(seconds=1))
    with pytest.raises(ValidationError, match="expired"):
        signin.check_password_token(desk.uow(), token)
    with pytest.raises(ValidationError, match="expired"):
        signin.reset_password(desk.uow(), token, NEW_PASSWORD, AUTH)
    with pytest.raises(NotFound):
        signin.check_password_token(desk.uow(), "no-such-token")


def test_using_one_link_voids_the_others(desk: Desk, customer: Actor) -> None:
    signin.request_password_reset(desk.uow(), "ann@c1001.example", BASE_URL, AUTH)
    signin.request_password_reset(desk.uow(), "ann@c1001.example", BASE_URL, AUTH)
    first, second = (link_token(m) for m in mails(desk))
    signin.reset_password(desk.uow(), second, NEW_PASSWORD, AUTH)
    with pytest.raises(ValidationError, match="used"):
        signin.check_password_token(desk.uow(), first)


def test_reset_requests_are_limited_per_hour(desk: Desk, customer: Actor, clock: FakeClock) -> None:
    for _ in range(AUTH.password_resets_per_hour + 2):
        signin.request_password_reset(desk.uow(), "ann@c1001.example", BASE_URL, AUTH)
    assert len(mails(desk)) == AUTH.password_resets_per_hour
    assert len(audit(desk, "password.reset_throttled")) == 2
    clock.advance(timedelta(hours=1))
    signin.request_password_reset(desk.uow(), "ann@c1001.example", BASE_URL, AUTH)
    assert len(mails(desk)) == AUTH.password_resets_per_hour + 1


def test_a_reset_does_not_bypass_the_second_factor(
    desk: Desk, customer: Actor, clock: FakeClock
) -> None:
    enrol(desk, customer)
    signin.request_password_reset(desk.uow(), "ann@c1001.example", BASE_URL, AUTH)
    signin.reset_password(desk.uow(), link_token(mails(desk)[0]), NEW_PASSWORD, AUTH)
    assert sign_in(desk.uow(), "ann@c1001.example", NEW_PASSWORD, None, AUTH).outcome is (
        SignInOutcome.TOTP_REQUIRED
    )


def test_no_password_code_or_link_reaches_the_audit_log(
    desk: Desk, customer: Actor, clock: FakeClock
) -> None:
    secret = enrol(desk, customer)
    clock.advance(STEP)
    code = code_at(secret, clock.now())
    sign_in(desk.uow(), "ann@c1001.example", PASSWORD, code, AUTH)
    sign_in(desk.uow(), "ann@c1001.example", "Wrong-Guess-1", None, AUTH)
    sign_in(desk.uow(), "nobody@c1001.example", "Stranger-Guess-2", None, AUTH)
    signin.request_password_reset(desk.uow(), "ann@c1001.example", BASE_URL, AUTH)
    token = link_token(mails(desk)[0])
    signin.reset_password(desk.uow(), token, NEW_PASSWORD, AUTH)
    issued = issue_token(desk.uow(), customer, "ann@c1001.example", "script")
    logged = json.dumps([[e.actor, e.action, e.object_id, e.details] for e in audit(desk)])
    for secret_value in (
        PASSWORD,
        "Wrong-Guess-1",
        "Stranger-Guess-2",
        NEW_PASSWORD,
        code,
        secret,
        token,
        issued.token,
    ):
        assert secret_value not in logged
