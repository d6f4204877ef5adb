"""What `codellama serve` configures beyond the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSettings:
    api_keys: tuple[str, ...] = ()  # empty: no key needed
    admin_key: str | None = None  # for /admin and /metrics; None: the first API key (none: open)
    max_queue: int = 256  # sequences that may wait beyond the engine's max_num_seqs; then 429
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 8 * 1024 * 1024  # larger request bodies get 413
    shutdown_grace: float = 10.0  # seconds in-flight requests may finish after SIGINT / SIGTERM
    retry_after: int = 1  # seconds, the Retry-After of a 429
    # when the engine dies: False (the default) stops the server with a non-zero exit code, so that
    # a supervisor restarts it; True keeps answering (/health 503, new requests 503)
    keep_serving_on_engine_failure: bool = False
    sse_ping: float = 15.0  # seconds without a byte on a stream before a `: ping` comment (0: never)
    sse_send_timeout: float = 30.0  # seconds a client may take no stream data before it is dropped (0: never)

    def __post_init__(self) -> None:
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if self.shutdown_grace < 0:
            raise ValueError(f"shutdown_grace must be >= 0, got {self.shutdown_grace}")
        if self.sse_ping < 0 or self.sse_send_timeout < 0:
            raise ValueError("sse_ping and sse_send_timeout must be >= 0")
        if any(not k for k in self.api_keys):
            raise ValueError("an API key must not be empty")
        if self.admin_key == "":
            raise ValueError("the admin key must not be empty")

    @property
    def operator_key(self) -> str | None:
        """The key /admin and /metrics ask for, None when they are open."""
        return self.admin_key if self.admin_key is not None else (self.api_keys[0] if self.api_keys else None)
