"""Content negotiation for `/` (pure): browsers get the web page, API clients keep the seed's JSON."""

from __future__ import annotations

__all__ = ["prefers_html"]


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def prefers_html(accept: str | None) -> bool:
    """True when the Accept header explicitly ranks text/html above application/json.

    Wildcards (`*/*`, what curl and most HTTP libraries send) do not count as asking for HTML, so API clients
    that send no particular preference get JSON, as in the seed.
    """
    if not accept:
        return False
    html = json = 0.0
    for part in accept.split(","):
        media, *params = part.split(";")
        media = media.strip().lower()
        quality = _quality(params)
        if media in ("text/html", "application/xhtml+xml"):
            html = max(html, quality)
        elif media in ("application/json", "application/*"):
            json = max(json, quality)
    return html > 0 and html > json
