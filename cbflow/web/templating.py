"""The portal's Jinja environment: our pages plus the GOV.UK Frontend macros, autoescaped."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    PrefixLoader,
    pass_context,
)
from jinja2.runtime import Context
from markupsafe import Markup, escape

from cbflow.web.security import CSRF_FIELD, csrf_token

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

SERVICE_NAME = "cbflow"
GOVUK_TEMPLATE = "govuk_frontend_jinja/template.html"


@pass_context
def csrf_field(context: Context) -> Markup:
    """The hidden field every form posts: {{ csrf_field() }}."""
    request: Request = context["request"]
    token = escape(csrf_token(request))
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{token}">')


def path_for(request: Request, name: str, /, **params: object) -> str:
    """The address of the route called `name` (its handler's name), with its path's values:
    pages and handlers ask for addresses by route, never build them by hand."""
    return str(request.app.url_path_for(name, **{key: str(value) for key, value in params.items()}))


@pass_context
def url(context: Context, name: str, /, **params: object) -> str:
    """{{ url('round_page', slug=round.slug) }}: a route's address, in a template."""
    return path_for(context["request"], name, **params)


def signed_in(request: Request) -> dict[str, Any] | None:
    """Who the session says is signed in (for display; authorisation reads the database)."""
    user = request.session.get("user")
    return user if isinstance(user, dict) else None


# the service navigation each role sees: (text, the name of the route it links to)
NAVIGATION = {
    "applicant": [
        ("Your applications", "applications_home"),
        ("Models to adopt", "models_home"),
        ("Pilots to follow", "pilots_home"),
    ],
    "assessor": [("Your assessments", "assigned")],
    "certifier": [("Applications to sign off", "sign_off_home")],
    "provider": [("Support requests", "support_home")],
    "staff": [("Funding rounds", "staff_home")],
    "admin": [
        ("Funding rounds", "staff_home"),
        ("People", "people"),
        ("Outbox", "outbox"),
    ],
}


def _signed_in(request: Request) -> dict[str, Any]:
    user = signed_in(request)
    path = request.url.path
    links = NAVIGATION.get(str(user.get("role")), []) if user else []
    hrefs = [(text, path_for(request, name)) for text, name in links]
    return {
        "user": user,
        "navigation": [
            {"text": text, "href": href, "active": path == href or path.startswith(href + "/")}
            for text, href in hrefs
        ],
    }


def errors_as_list(errors: dict[str, str]) -> list[dict[str, str]]:
    """A form's errors (field id -> message) as GOV.UK's error summary lists them."""
    return [{"text": message, "href": f"#{field}"} for field, message in errors.items()]


def environment(pages: Path) -> Environment:
    env = Environment(
        loader=ChoiceLoader(
            [
                FileSystemLoader(pages),
                PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
            ]
        ),
        autoescape=True,  # every template, whatever its name
        # the pages are part of the installed product: compiled once, never looked for again
        # (a check of each file's time on every page cost a tenth of its rendering)
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["csrf_field"] = csrf_field
    env.globals["url"] = url
    env.globals["service_name"] = SERVICE_NAME
    env.globals["errors_as_list"] = errors_as_list
    return env


def govuk_template_source(env: Environment) -> str:
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, GOVUK_TEMPLATE)
    return source


class Pages:
    """Renders a page template with the request (for CSRF and the signed-in user)."""

    def __init__(self, env: Environment) -> None:
        self.templates = Jinja2Templates(env=env, context_processors=[_signed_in])

    def render(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> Response:
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    def show(
        self, request: Request, name: str, page: DataclassInstance, status_code: int = 200
    ) -> Response:
        """Renders a page from its typed context: a dataclass whose fields the template reads
        by name (shallowly: a field that is itself a dataclass stays one)."""
        context = {field.name: getattr(page, field.name) for field in fields(page)}
        return self.render(request, name, status_code, **context)
