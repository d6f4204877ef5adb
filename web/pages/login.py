"""/login and /logout: a browser gives its key once and keeps a signed session cookie (see
web/auth.py for who needs which key)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.params import FromQuery, QueryParameter
from litestar.response import Redirect, Template

from ..auth import COOKIE, SESSION_SECONDS, USER, safe_next


class LoginController(Controller):
    include_in_schema = False

    @get("/login", sync_to_thread=False)
    def form(self, next_path: Annotated[str, QueryParameter(name="next")] = "/",
             need: FromQuery[str] = USER) -> Template:
        return Template(template_name="login.html", context={"next": safe_next(next_path), "need": need})

    @post("/login")
    async def login(self, request: Request) -> Response:
        form = await request.form()
        auth = request.app.state.page_auth
        target = safe_next(form.get("next"))
        role = auth.role_of_key(form.get("key", ""))
        if role is None:
            return Template(template_name="login.html", status_code=401,
                            context={"next": target, "need": USER, "error": "That key is not valid."})
        response = Redirect(target, status_code=303)
        response.set_cookie(COOKIE, auth.session_cookie(role), max_age=SESSION_SECONDS, path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @post("/logout", sync_to_thread=False)
    def logout(self) -> Redirect:
        response = Redirect("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response
