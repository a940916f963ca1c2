"""E-mail templates of campaign steps: checked when a campaign is saved, rendered per lead.

Templates are Jinja2 run in a sandbox (a supervisor's template cannot reach Python objects);
the HTML part is autoescaped, so a lead's name such as ``<script>`` arrives as text; subject
and plain text are rendered without HTML escaping (they are not HTML). Every rendered mail
carries a plain-text part and a visible unsubscribe link in the lead's language: when the
template does not show ``{{ unsubscribe_url }}`` itself, a footer with it is appended.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from gateway.campaigns.model import CampaignIn, CheckError, EmailTemplate, SendEmail
from gateway.store.models import Person

__all__ = [
    "SAMPLE_CONTEXT",
    "RenderedMail",
    "check_campaign_templates",
    "check_template",
    "choose_template",
    "html_to_text",
    "person_context",
    "render",
]

# the languages the appended footer (and the unsubscribe page) speak; others get English
FOOTER_LANGUAGES = ("es", "en")

_FOOTER_TEXT = {
    "es": "¿No quieres recibir más correos como este? Date de baja aquí: {url}",
    "en": "Don't want to receive e-mails like this? Unsubscribe here: {url}",
}
_FOOTER_HTML = {
    "es": '¿No quieres recibir más correos como este? <a href="{url}">Darse de baja</a>',
    "en": 'Don\'t want to receive e-mails like this? <a href="{url}">Unsubscribe</a>',
}
_FOOTER_STYLE = "margin-top:24px;font-size:12px;color:#667085"


def footer_language(language: str) -> str:
    return language if language in FOOTER_LANGUAGES else "en"


@dataclass(frozen=True, slots=True)
class RenderedMail:
    """One lead's e-mail: subject (one line), HTML part and plain-text part."""

    subject: str
    html: str
    text: str


# -- environments ---------------------------------------------------------------------------

# lenient at send time: a field a lead lacks renders empty rather than failing the send
_HTML_ENV = SandboxedEnvironment(autoescape=True, keep_trailing_newline=True)
_TEXT_ENV = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
# strict at check time: a misspelt field is reported to the supervisor who wrote it
_CHECK_HTML_ENV = SandboxedEnvironment(autoescape=True, undefined=jinja2.StrictUndefined)
_CHECK_TEXT_ENV = SandboxedEnvironment(autoescape=False, undefined=jinja2.StrictUndefined)


@lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> jinja2.Template:
    # one compile per template text: a campaign renders the same few templates 100,000 times
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


# what every template sees besides a lead's context: Jinja's default globals (range, dict,
# cycler...), which both environments have, merged into each mail's context once rather
# than copied by every render
_GLOBALS = dict(_HTML_ENV.globals)


def _render(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """``template.render(variables)`` for ``variables`` that hold the globals already: Jinja's
    own render copies them into a new dict on every call, and reads the globals' ChainMap,
    which was a third of a campaign mail's rendering time."""
    try:
        return template.environment.concat(
            template.root_render_func(template.new_context(variables, shared=True))
        )
    except Exception:
        template.environment.handle_exception()  # raises it with the template's line


# -- context --------------------------------------------------------------------------------


def person_context(
    person: Person,
    owner_name: str | None,
    *,
    email: str = "",
    sender_name: str = "",
) -> dict[str, Any]:
    """What a template may use: ``lead.*`` (the lead's fields), ``owner.name`` (their agent),
    ``sender.name`` (the From name); ``unsubscribe_url`` is added when rendering."""
    score = None if person.score is None else round(person.score, 1)
    return {
        "lead": {
            "first_name": person.first_name,
            "last_name": person.last_name,
            "name": person.display_name,
            "company": person.company,
            "title": person.title,
            "country": person.country,
            "status": person.status or "",
            "lost_reason": person.lost_reason,
            "source": person.source or "",
            "score": score,
            "email": email,
        },
        "owner": {"name": owner_name or ""},
        "sender": {"name": sender_name},
    }


# what the preview shows and the check renders against: every field a template may name
SAMPLE_CONTEXT: Mapping[str, Any] = {
    "lead": {
        "first_name": "Lucía",
        "last_name": "García",
        "name": "Lucía García",
        "company": "Ejemplo S.L.",
        "title": "Directora de compras",
        "country": "ES",
        "status": "lost",
        "lost_reason": "no_budget",
        "source": "web_form",
        "score": 6.5,
        "email": "lucia.garcia@example.com",
    },
    "owner": {"name": "Ana Pérez"},
    "sender": {"name": "Centralita"},
    "unsubscribe_url": "https://example.invalid/unsubscribe/SAMPLE",
}


# -- check ----------------------------------------------------------------------------------


def _template_line(tb: TracebackType | None) -> int | None:
    """The template line a render error happened on (Jinja rewrites its traceback frames to
    point at the template source, named ``<template>``)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _check_one(path: str, source: str, html: bool) -> None:
    env = _CHECK_HTML_ENV if html else _CHECK_TEXT_ENV
    try:
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise CheckError(path, f"line {e.lineno}: {e.message}") from None
    try:
        template.render(SAMPLE_CONTEXT)
    except jinja2.exceptions.SecurityError as e:
        where = _template_line(e.__traceback__)
        raise CheckError(path, f"line {where}: not allowed in a template ({e})") from None
    except jinja2.UndefinedError as e:
        where = _template_line(e.__traceback__)
        raise CheckError(
            path, f"line {where}: unknown field ({e.message}); known: {_KNOWN_FIELDS}"
        ) from None
    except Exception as e:  # a filter used wrongly, a division by zero...
        where = _template_line(e.__traceback__)
        raise CheckError(path, f"line {where}: {type(e).__name__}: {e}") from None


_KNOWN_FIELDS = ", ".join(
    [f"lead.{k}" for k in SAMPLE_CONTEXT["lead"]] + ["owner.name", "sender.name", "unsubscribe_url"]
)


def check_template(t: EmailTemplate, path: str = "") -> None:
    """Raise :class:`CheckError` for a template that would not render: a syntax error, an
    unknown field, something the sandbox forbids. The error's path names the part (subject,
    html, text) under ``path`` and its message the line."""
    prefix = f"{path}." if path else ""
    _check_one(f"{prefix}subject", t.subject, html=False)
    _check_one(f"{prefix}html", t.html, html=True)
    if t.text:
        _check_one(f"{prefix}text", t.text, html=False)


def check_campaign_templates(c: CampaignIn) -> None:
    """Every e-mail template of a campaign, with paths like ``steps[2].templates.es.html``."""
    for i, step in enumerate(c.steps):
        if isinstance(step, SendEmail):
            for lang, t in step.templates.items():
                check_template(t, f"steps[{i}].templates.{lang}")


def choose_template(
    step: SendEmail, language: str, campaign_language: str
) -> tuple[str, EmailTemplate]:
    """The lead's language when the step has a version in it, else the campaign's (which
    :func:`check_campaign` guarantees), else any."""
    for lang in (language, campaign_language):
        if lang in step.templates:
            return lang, step.templates[lang]
    lang = next(iter(step.templates))
    return lang, step.templates[lang]


# -- render ---------------------------------------------------------------------------------


def render(
    t: EmailTemplate,
    context: Mapping[str, Any],
    *,
    unsubscribe_url: str,
    open_pixel_url: str | None = None,
    language: str = "es",
) -> RenderedMail:
    """One lead's e-mail. Raises what Jinja raises (the check makes that unlikely); the
    caller records a failed send."""
    ctx = {**_GLOBALS, **context, "unsubscribe_url": unsubscribe_url}
    # a subject is one header line: a lead's name must not add lines (header injection)
    subject = " ".join(_render(_compiled(t.subject, False), ctx).split())
    body = _render(_compiled(t.html, True), ctx)
    text = _render(_compiled(t.text, False), ctx) if t.text else html_to_text(body)
    lang = footer_language(language)
    escaped_url = html_lib.escape(unsubscribe_url, quote=True)
    ending = []  # what goes before </body>, in one insertion: the footer, then the pixel
    if escaped_url not in body and unsubscribe_url not in body:
        footer = _FOOTER_HTML[lang].format(url=escaped_url)
        ending.append(f'<p style="{_FOOTER_STYLE}">{footer}</p>')
    if unsubscribe_url not in text:
        text = (
            text.rstrip("\n") + "\n\n-- \n" + _FOOTER_TEXT[lang].format(url=unsubscribe_url) + "\n"
        )
    if open_pixel_url:
        pixel = html_lib.escape(open_pixel_url, quote=True)
        ending.append(f'<img src="{pixel}" width="1" height="1" alt="" style="border:0">')
    if ending:
        body = _insert_before_body_end(body, "\n".join(ending))
    return RenderedMail(subject, body, text)


_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _insert_before_body_end(html: str, fragment: str) -> str:
    matches = list(_BODY_END.finditer(html))
    if not matches:
        return html.rstrip("\n") + "\n" + fragment + "\n"
    at = matches[-1].start()
    return html[:at] + fragment + "\n" + html[at:]


# -- HTML to text ---------------------------------------------------------------------------

_BLOCKS = frozenset(
    {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr"}
)
_SKIP = frozenset({"head", "title"})  # text inside these is not part of the message
# one pass of a regular expression rather than html.parser: a campaign derives the text of
# every mail it sends, and this takes a third of the parser's time (20 µs, not 50, a mail)
_ATTRS = r"(?:[^>\"']|\"[^\"]*\"|'[^']*')*"  # quoted values may hold ">"
_RAW_TEXT = re.compile(rf"<(script|style)\b{_ATTRS}>.*?(?:</\1\s*>|\Z)", re.S | re.I)
_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"  # a comment
    rf"|<(/?)([a-zA-Z][-a-zA-Z0-9]*)({_ATTRS})>"  # a tag: closing?, name, attributes
    r"|<[!?][^>]*>"  # a doctype or processing instruction
    r"|([^<]+|<)",  # text (a lone "<" is text too)
    re.S,
)
_HREF = re.compile(r"""(?:^|\s)href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'<>`]+))""", re.I)
_BLANK_LINES = re.compile(r"\n{3,}")
_SPELT_OUT = ("http://", "https://", "mailto:")  # links a reader can follow from plain text


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML body: paragraphs kept, links spelt out."""
    out: list[str] = []
    skip = 0
    hrefs: list[str | None] = []
    # findall, not finditer: tuples without a match object each (groups not matched are "")
    for closing, tag, attrs, data in _TOKEN.findall(_RAW_TEXT.sub("", html)):
        if data:
            if not skip:
                out.append(_collapse(html_lib.unescape(data) if "&" in data else data))
            continue
        if not tag:  # a comment, a doctype
            continue
        tag = tag.lower()
        if closing:
            if tag in _SKIP:
                skip = max(0, skip - 1)
            elif tag in _BLOCKS:
                out.append("\n")
            if tag == "a" and hrefs:
                href = hrefs.pop()
                if href and href.startswith(_SPELT_OUT):
                    out.append(f" ({href.removeprefix('mailto:')})")
            continue
        if tag in _SKIP:
            skip += 1
        elif tag in _BLOCKS:
            # "<br/>" opens and closes: a line break each way, as a browser shows it
            out.append("\n\n" if attrs.rstrip().endswith("/") else "\n")
        if tag == "li":
            out.append("- ")
        elif tag == "a":
            h = _HREF.search(attrs)
            hrefs.append(None if h is None else html_lib.unescape(next(g for g in h.groups() if g)))
    lines = [line.strip() for line in "".join(out).split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"


def _collapse(data: str) -> str:
    """Each run of white space as one space, as a browser shows text: str.split() knows the
    same white space as the regular expression ``\\s`` and takes a fifth of its time."""
    if "  " not in data and data.isprintable():
        return data  # only single ASCII spaces (every other white space is not printable)
    words = data.split()
    if not words:
        return " "
    text = " ".join(words)
    if data[0].isspace():
        text = " " + text
    if data[-1].isspace():
        text += " "
    return text
