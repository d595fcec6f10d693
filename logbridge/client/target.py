"""Where a sender sends (the shipper's ``collector:`` key, DESIGN.md §6), validated whole."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config import Duration, StrictModel


class TlsConfig(StrictModel):
    """TLS towards the collector: a private CA, and a client certificate for mutual TLS."""

    ca: str | None = None  # PEM bundle that signed the collector's certificate
    cert: str | None = None  # client certificate (PEM)
    key: str | None = None  # its private key (PEM); may be inside ``cert``
    verify: bool = True  # False only for a lab: the token then travels to whoever answers

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key and not self.cert:
            raise ValueError("tls.key is set without tls.cert: set both for a client certificate")
        return self


class RetryConfig(StrictModel):
    """Capped exponential backoff with jitter; retries never give up (the files are the buffer)."""

    initial: Duration = 0.2
    max: Duration = 30.0


class CollectorTarget(StrictModel):
    """A collector's ``POST /events`` URL and how to reach it."""

    url: str
    token_env: str | None = None
    token_file: str | None = None
    compression: Literal["gzip", "none"] = "gzip"
    compression_level: int = Field(default=1, ge=1, le=9)
    timeout: Duration = 30.0
    tls: TlsConfig = TlsConfig()
    retry: RetryConfig = RetryConfig()

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"expected an http:// or https:// URL such as http://127.0.0.1:8765/events, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> CollectorTarget:
        if self.token_env and self.token_file:
            raise ValueError("set token_env or token_file, not both")
        return self
