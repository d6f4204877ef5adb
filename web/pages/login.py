"""/login and /logout: a browser gives its key once and keeps a session cookie (see web/auth.py
for who needs which key, web/sessions.py for the sessions)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromQuery, QueryParameter
from litestar.response import Redirect, Template

from ..auth import COOKIE, USER, safe_next, same_origin
from ..errors import APIError
from ..sessions import SESSION_SECONDS


def _cookie(request: Request, value: str, max_age: int) -> Cookie:
    return Cookie(key=COOKIE, value=value, max_age=max_age, path="/", httponly=True, samesite="strict",
                  secure=request.url.scheme == "https")


def _refuse_other_origins(request: Request) -> None:
    if not same_origin(request):
        raise APIError(403, "cross-origin request refused: log in from this server's own page", code="bad_origin")


class LoginController(Controller):
    include_in_schema = False

    @get("/login", sync_to_thread=False)
    def form(self, next_path: Annotated[str, QueryParameter(name="next")] = "/",
             need: FromQuery[str] = USER) -> Template:
        return Template(template_name="login.html", context={"next": safe_next(next_path), "need": need})

    @post("/login")
    async def login(self, request: Request) -> Response:
        _refuse_other_origins(request)
        form = await request.form()
        auth = request.app.state.page_auth
        target = safe_next(form.get("next"))
        role = auth.role_of_key(form.get("key", ""))
        if role is None:
            return Template(template_name="login.html", status_code=401,
                            context={"next": target, "need": USER, "error": "That key is not valid."})
        session = auth.sessions.open(role)
        return Redirect(target, status_code=303, cookies=[_cookie(request, session, SESSION_SECONDS)])

    @post("/logout", sync_to_thread=False)
    def logout(self, request: Request) -> Redirect:
        """Ends the session on the server too: its cookie, copied or not, opens nothing any more."""
        _refuse_other_origins(request)
        session = request.cookies.get(COOKIE)
        if session:
            request.app.state.page_auth.sessions.close(session)
        return Redirect("/login", status_code=303, cookies=[_cookie(request, "", 0)])
