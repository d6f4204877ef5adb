"""Browser sessions the server remembers: a random id (the session cookie's value) -> the role it
was opened for and when it expires. Logging out forgets the id, so a copied cookie stops working
at once; a restart forgets them all. At most `limit` are kept (the oldest go first)."""

from __future__ import annotations

import secrets
import time

SESSION_SECONDS = 12 * 3600


class Sessions:
    def __init__(self, lifetime: float = SESSION_SECONDS, limit: int = 10_000):
        self.lifetime = lifetime
        self.limit = limit
        self._live: dict[str, tuple[str, float]] = {}  # id -> (role, expiry), oldest first

    def open(self, role: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        self._live = {sid: entry for sid, entry in self._live.items() if entry[1] > now}
        while len(self._live) >= self.limit:
            del self._live[next(iter(self._live))]
        sid = secrets.token_urlsafe(32)
        self._live[sid] = (role, now + self.lifetime)
        return sid

    def role(self, sid: str, now: float | None = None) -> str | None:
        role, expiry = self._live.get(sid, (None, 0.0))
        return role if expiry > (time.time() if now is None else now) else None

    def close(self, sid: str) -> None:
        self._live.pop(sid, None)

    def __len__(self) -> int:
        return len(self._live)
