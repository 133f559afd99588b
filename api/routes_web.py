"""`/` (the seed's welcome JSON, or the web page for browsers) and `/ui` (always the page)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from hyperfollow.api.negotiation import prefers_html
from hyperfollow.api.schemas import Welcome

__all__ = ["STATIC_DIR", "WELCOME", "web_router"]

STATIC_DIR = Path(__file__).parent / "static"
WELCOME = "Welcome to the hyperfollow API: the best Hyperliquid traders, ranked and streamed"


def web_router() -> APIRouter:
    router = APIRouter()
    page = STATIC_DIR / "index.html"

    @router.get("/", response_model=Welcome, tags=["service"],
                responses={200: {"content": {"text/html": {}},
                                 "description": "the welcome JSON, or the web page when the client asks for HTML"}})
    async def root(request: Request) -> Response:
        """The seed's welcome message; a browser (Accept: text/html) gets the web page instead."""
        if prefers_html(request.headers.get("accept")):
            return FileResponse(page, media_type="text/html", headers={"Vary": "Accept"})
        return JSONResponse(Welcome(message=WELCOME).model_dump(), headers={"Vary": "Accept"})

    @router.get("/ui", include_in_schema=False)
    async def ui() -> FileResponse:
        return FileResponse(page, media_type="text/html")

    return router
