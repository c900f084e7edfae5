"""Sign-in, sign-out, two-factor enrolment and password resets, for staff and customers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from abusedesk.accounts import signin
from abusedesk.accounts.permissions import Actor
from abusedesk.accounts.signin import SignInOutcome
from abusedesk.errors import NotFound, ValidationError
from abusedesk.web import csrf, flash, session
from abusedesk.web.api.deps import DeskDep
from abusedesk.web.templating import render, when

router = APIRouter(dependencies=[Depends(csrf.protect)], include_in_schema=False)

SEE_OTHER = HTTPStatus.SEE_OTHER


def home_of(is_staff: bool) -> str:
    return "/staff" if is_staff else "/portal"


@router.get("/")
def home(request: Request) -> Response:
    actor = session.signed_in_actor(request)
    if actor is None:
        return RedirectResponse("/login", SEE_OTHER)
    return RedirectResponse(home_of(actor.is_staff), SEE_OTHER)


@router.get("/login")
def login_form(request: Request, next: str = "") -> Response:
    actor = session.signed_in_actor(request)
    if actor is not None:
        return RedirectResponse(session.safe_next(next, home_of(actor.is_staff)), SEE_OTHER)
    return render(request, "signin/login.html", {"next": next, "email": ""})


@router.post("/login")
def login(
    request: Request,
    desk: DeskDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    result = signin.sign_in(desk.uow(), email, password, code.strip() or None, desk.settings.auth)
    context: dict[str, Any] = {"next": next, "email": email}
    match result.outcome:
        case SignInOutcome.OK:
            assert result.actor is not None
            session.start(request, result.actor, result.session_epoch)
            return RedirectResponse(
                session.safe_next(next, home_of(result.actor.is_staff)), SEE_OTHER
            )
        case SignInOutcome.TOTP_ENROLMENT_REQUIRED:
            assert result.actor is not None
            session.start_enrolment(request, result.actor, result.session_epoch)
            flash.add(
                request,
                "Your role signs in with a second factor. Set it up now to continue.",
                flash.Level.INFO,
            )
            return RedirectResponse("/account/two-factor", SEE_OTHER)
        case SignInOutcome.TOTP_REQUIRED:
            error = "Enter the six-digit code from your authenticator app, with your password."
            context["ask_code"] = True
        case SignInOutcome.TOTP_INVALID:
            error = "That code is wrong or has been used. Enter the current one."
            context["ask_code"] = True
        case SignInOutcome.LOCKED:
            error = (
                "Too many failed sign-ins. This account is locked until "
                f"{when(result.locked_until)}; you can also reset your password."
            )
        case _:
            error = "The e-mail address or the password is wrong."
    context["error"] = error
    status = (
        HTTPStatus.TOO_MANY_REQUESTS
        if result.outcome is SignInOutcome.LOCKED
        else HTTPStatus.UNAUTHORIZED
    )
    return render(request, "signin/login.html", context, status_code=status)


@router.post("/logout")
def logout(request: Request) -> Response:
    session.end(request)
    flash.add(request, "You have signed out.", flash.Level.INFO)
    return RedirectResponse("/login", SEE_OTHER)


# -- two-factor ---------------------------------------------------------------------------------


def _enrolling_actor(request: Request, desk: DeskDep) -> tuple[Actor, bool]:
    """Who is setting up two-factor: a fully signed-in user, or one held at enrolment."""
    actor = session.signed_in_actor(request)
    if actor is not None:
        return actor, False
    pending = session.enrolment(request)
    if pending is not None:
        held = signin.actor_for_session(desk.uow(), pending["uid"], pending["epoch"])
        if held is not None:
            return held, True
    raise session.SignInRequired("/account/two-factor")


@router.get("/account/two-factor")
def two_factor_form(request: Request, desk: DeskDep) -> Response:
    actor, _ = _enrolling_actor(request, desk)
    secret = request.session.get("totp_secret") or signin.new_totp_secret()
    request.session["totp_secret"] = secret
    email = actor.label.split(":", 1)[-1]
    uri = signin.totp_uri(secret, email, desk.settings.auth.totp_issuer)
    return render(
        request,
        "signin/two_factor.html",
        {"secret": secret, "qr_svg": signin.totp_qr_svg(uri), "uri": uri},
    )


@router.post("/account/two-factor")
def two_factor_enable(
    request: Request, desk: DeskDep, code: Annotated[str, Form()] = ""
) -> Response:
    actor, held = _enrolling_actor(request, desk)
    secret = request.session.get("totp_secret")
    if not secret:
        return RedirectResponse("/account/two-factor", SEE_OTHER)
    try:
        signin.enable_totp(desk.uow(), actor, secret, code.strip())
    except ValidationError as exc:
        uri = signin.totp_uri(secret, actor.label.split(":", 1)[-1], desk.settings.auth.totp_issuer)
        return render(
            request,
            "signin/two_factor.html",
            {"secret": secret, "qr_svg": signin.totp_qr_svg(uri), "uri": uri, "error": str(exc)},
            status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
        )
    request.session.pop("totp_secret", None)
    if held:
        # Enrolment ends the held sign-in; the next one asks for the code, as every later one will.
        session.end(request)
        flash.add(request, "Two-factor sign-in is set up. Sign in with your code.")
        return RedirectResponse("/login", SEE_OTHER)
    flash.add(request, "Two-factor sign-in is set up.")
    return RedirectResponse(home_of(actor.is_staff), SEE_OTHER)


# -- password reset -----------------------------------------------------------------------------


@router.get("/password-reset")
def reset_request_form(request: Request) -> Response:
    return render(request, "signin/reset_request.html", {})


@router.post("/password-reset")
def reset_request(request: Request, desk: DeskDep, email: Annotated[str, Form()] = "") -> Response:
    signin.request_password_reset(desk.uow(), email, desk.settings.base_url, desk.settings.auth)
    # The same answer whether or not the address has an account: no one learns who is a user.
    return render(request, "signin/reset_request.html", {"sent": True, "email": email})


@router.get("/password-reset/{token}")
def reset_form(request: Request, desk: DeskDep, token: str) -> Response:
    try:
        email = signin.check_password_token(desk.uow(), token)
    except (NotFound, ValidationError):
        return render(request, "signin/reset_invalid.html", {}, status_code=HTTPStatus.NOT_FOUND)
    return render(request, "signin/reset_form.html", {"token": token, "email": email})


@router.post("/password-reset/{token}")
def reset(
    request: Request,
    desk: DeskDep,
    token: str,
    password: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    try:
        email = signin.check_password_token(desk.uow(), token)
    except (NotFound, ValidationError):
        return render(request, "signin/reset_invalid.html", {}, status_code=HTTPStatus.NOT_FOUND)
    if password != confirm:
        return render(
            request,
            "signin/reset_form.html",
            {"token": token, "email": email, "error": "The two passwords differ."},
            status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
        )
    try:
        signin.reset_password(desk.uow(), token, password, desk.settings.auth)
    except ValidationError as exc:
        return render(
            request,
            "signin/reset_form.html",
            {"token": token, "email": email, "error": str(exc)},
            status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
        )
    flash.add(request, "Your password is set. Sign in with it.")
    return RedirectResponse("/login", SEE_OTHER)
