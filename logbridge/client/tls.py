"""The ``verify`` argument of the ``httpx.Client`` that talks to a collector."""

from __future__ import annotations

import ssl

from ..errors import ConfigError


def tls_context(
    url: str,
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    verify: bool = True,
    what: str = "collector TLS",
    names: tuple[str, str, str] = ("tls.ca", "tls.cert", "tls.key"),
) -> ssl.SSLContext | bool:
    """A context trusting ``ca`` (else the system's CAs), presenting ``cert``/``key`` if set.

    Plain HTTP gets ``False``: building the default context loads the whole CA bundle, for
    nothing. ``verify=False`` (a lab) still encrypts but checks no one. A file that cannot be
    loaded is a `ConfigError` that names the settings (``names``: how the caller calls ca,
    cert and key)."""
    if not url.startswith("https://"):
        return False
    try:
        ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        if cert:
            ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        given = [name for name, value in zip(names, (ca, cert, key), strict=True) if value]
        raise ConfigError(f"{what}: cannot load {'/'.join(given)}: {exc}") from exc
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
