"""Where a sender sends (the shipper's ``collector:`` key, DESIGN.md §6), validated whole."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from ..config import Duration, StrictModel
from .failover import DEFAULT_FAILBACK, parse_failback


def http_url(value: str) -> str:
    """A collector's ``POST /events`` URL: http:// or https://."""
    if not value.startswith(("http://", "https://")):
        raise ValueError(
            f"expected an http:// or https:// URL such as http://127.0.0.1:8765/events, got {value!r}"
        )
    return value


CollectorUrl = Annotated[str, AfterValidator(http_url)]
Failback = Annotated[float | None, BeforeValidator(parse_failback)]


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
    """A collector's ``POST /events`` URL (``url``), or several (``urls``, in order of
    preference: `logbridge.client.failover`), and how to reach them."""

    url: CollectorUrl | None = None
    urls: list[CollectorUrl] | None = Field(default=None, min_length=1)
    # Seconds away from the first of ``urls`` before it is tried again; None (``never``): stay.
    failback: Failback = DEFAULT_FAILBACK
    token_env: str | None = None
    token_file: str | None = None
    compression: Literal["gzip", "none"] = "gzip"
    compression_level: int = Field(default=1, ge=1, le=9)
    timeout: Duration = 30.0
    tls: TlsConfig = TlsConfig()
    retry: RetryConfig = RetryConfig()

    @model_validator(mode="after")
    def _one_url_key(self) -> CollectorTarget:
        if self.url is None and self.urls is None:
            raise ValueError("set url (one collector) or urls (a list, tried in order)")
        if self.url is not None and self.urls is not None:
            raise ValueError("set url or urls, not both")
        if self.urls is not None and len(set(self.urls)) != len(self.urls):
            raise ValueError("urls: a URL is listed twice")
        return self

    @model_validator(mode="after")
    def _one_token_source(self) -> CollectorTarget:
        if self.token_env and self.token_file:
            raise ValueError("set token_env or token_file, not both")
        return self

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The URLs in order of preference (one when ``url`` is set)."""
        if self.urls is not None:
            return tuple(self.urls)
        assert self.url is not None  # the validator saw to it
        return (self.url,)
