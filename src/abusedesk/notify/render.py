"""Turning an outbox message into mail: a subject, a plain-text and an HTML body.

Templates are laid out as `<language>/<template>.{subject,txt,html}.j2`, with shared pieces
named `<language>/_<piece>.j2` and reached from a template as `partial("<piece>")`. The
operator's directory (`[notify] templates_dir`) is searched before the shipped templates, and a
language that lacks a template falls back to English for that one template. So an operator
can replace a single file, or add a language one template at a time.

Pure apart from reading the templates: the time to count "how long is left" from is passed in.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)

from abusedesk.errors import AbuseDeskError
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.routing import USER_TEMPLATES
from abusedesk.policy import Category, Policy, Severity

SHIPPED = Path(__file__).parent / "templates"
FALLBACK_LANGUAGE = "en"
# A language tag names a directory: nothing in it may walk out of the template roots.
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")
_SUBJECT_MAX = 250


class RenderError(AbuseDeskError):
    """A message could not be rendered. `permanent`: rendering it again cannot succeed (the
    policy forbids it); otherwise a template or its context is wrong, which an operator can
    fix, so the message is worth retrying."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


def render(
    template: MessageTemplate,
    context: dict[str, Any],
    language: str,
    base_url: str,
    policy: Policy,
    *,
    now: datetime | None = None,
    templates_dir: Path | None = None,
    desk_name: str = "Abuse Desk",
) -> RenderedMessage:
    """Render one message. `now` is when it is sent: "how long is left" counts from it (and is
    left out without it). Raises RenderError."""
    if "ticket" not in context and template not in USER_TEMPLATES:
        raise RenderError(f"{template.value}: the context has no ticket", permanent=True)
    lang = language if _LANGUAGE.match(language) else FALLBACK_LANGUAGE
    operator = templates_dir.resolve() if templates_dir else None
    env = _environment(operator, _fingerprint(operator))
    variables = _variables(template, context, lang, base_url.rstrip("/"), policy, now)
    variables["desk_name"] = desk_name

    def partial(name: str) -> Template:
        return _select(env, lang, f"_{name}")

    variables["partial"] = partial
    try:
        subject = _one_line(_select(env, lang, f"{template.value}.subject").render(variables))
        tag = variables["tag"]
        if tag not in subject:
            # Replies find their case by the tag: an operator's subject may not drop it.
            subject = f"{tag} {subject}"
        if len(subject) > _SUBJECT_MAX:
            subject = subject[: _SUBJECT_MAX - 1].rstrip() + "…"
        variables["subject"] = subject
        text = _select(env, lang, f"{template.value}.txt").render(variables)
        html_template = _select(env, lang, f"{template.value}.html")
        # The page declares the language it is written in, which a fallback makes English.
        variables["language"] = (html_template.name or lang).partition("/")[0]
        html = html_template.render(variables)
    except TemplateNotFound as exc:
        raise RenderError(f"{template.value}: no template {exc.message}") from exc
    except TemplateError as exc:
        raise RenderError(f"{template.value} ({lang}): {exc}") from exc
    return RenderedMessage(subject, text.strip() + "\n", html)


def _select(env: Environment, lang: str, name: str) -> Template:
    names = [f"{lang}/{name}.j2"]
    if lang != FALLBACK_LANGUAGE:
        names.append(f"{FALLBACK_LANGUAGE}/{name}.j2")
    return env.select_template(names)


def _fingerprint(templates_dir: Path | None) -> tuple[tuple[str, int, int], ...]:
    """The operator's files and their times: a file added there must shadow a shipped
    template the environment has already loaded, which Jinja's own reload check (the loaded
    file's time) does not notice."""
    if templates_dir is None or not templates_dir.is_dir():
        return ()
    found = []
    for path in templates_dir.rglob("*.j2"):
        try:
            stat = path.stat()
        except OSError:  # removed while listing
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(found))


@lru_cache(maxsize=8)
def _environment(templates_dir: Path | None, fingerprint: tuple[object, ...]) -> Environment:
    roots = [str(templates_dir)] if templates_dir else []
    roots.append(str(SHIPPED))
    return Environment(
        loader=FileSystemLoader(roots),
        auto_reload=False,  # the fingerprint makes a new environment when a file changes
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _variables(
    template: MessageTemplate,
    context: dict[str, Any],
    lang: str,
    base_url: str,
    policy: Policy,
    now: datetime | None,
) -> dict[str, Any]:
    category = _category(context.get("category"))
    severity = _severity(context.get("severity"))
    rule = policy.rule(category) if category else None
    if template is MessageTemplate.DMCA_FORWARD and (rule is None or rule.hide_complainant):
        # The notice names the complainant; only a category whose policy says the customer
        # may know who complained (copyright, 17 U.S.C. 512(c)(3)) may forward it.
        raise RenderError(
            f"the policy hides the complainant for {context.get('category')!r}: "
            "a notice may not be forwarded",
            permanent=True,
        )
    deadline = _instant(context.get("deadline"))
    case_id = context.get("case_id")
    left = deadline - now if deadline and now else None
    return {
        **context,
        # A user's own mail (a reset link) is about no ticket, and a reply to it reaches none.
        "ticket": context.get("ticket") or "",
        "tag": f"[{context['ticket']}]" if context.get("ticket") else "",
        "language": lang,
        "base_url": base_url,
        "portal_url": f"{base_url}/portal/cases/{case_id}"
        if case_id is not None
        else f"{base_url}/portal",
        "category_label": rule.label if rule else (context.get("category") or ""),
        "severity_label": severity.label if severity else "",
        "state_label": str(context.get("state") or "").replace("_", " "),
        "at_once": bool(category and severity and policy.disconnects_at_once(category, severity)),
        "deadline_utc": _utc_text(deadline) if deadline else None,
        "time_left": duration_words(left) if left is not None and left > timedelta(0) else None,
        "overdue": left is not None and left <= timedelta(0),
        "termination_grace": duration_words(policy.termination_grace),
    }


def _category(value: object) -> Category | None:
    try:
        return Category(str(value)) if value else None
    except ValueError:
        return None


def _severity(value: object) -> Severity | None:
    try:
        return Severity(str(value)) if value else None
    except ValueError:
        return None


def _instant(value: object) -> datetime | None:
    if not value:
        return None
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise RenderError(f"the deadline {value!r} is not a time", permanent=True) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%A %d %B %Y, %H:%M UTC")


def _one_line(text: str) -> str:
    # A subject is a header: a line break in it would let a value start a header of its own.
    visible = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return " ".join(visible.split())


def duration_words(delta: timedelta) -> str:
    """ "24 hours", "1 day and 12 hours" is said "36 hours", "7 days", "45 minutes": how an abuse
    desk states a deadline. Rounded to the minute, so a mail sent a second after the ticket was
    opened still says 24 hours."""
    minutes = round(delta.total_seconds() / 60)
    if minutes < 1:
        return "less than a minute"
    hours, minute = divmod(minutes, 60)
    if hours == 0:
        return _plural(minute, "minute")
    if hours < 48:
        words = _plural(hours, "hour")
        return f"{words} and {_plural(minute, 'minute')}" if minute else words
    days, hour = divmod(hours, 24)
    words = _plural(days, "day")
    return f"{words} and {_plural(hour, 'hour')}" if hour else words


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"
