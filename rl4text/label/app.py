"""``rl4text label serve``: the annotators' web app (Starlette, server-rendered Jinja2 with autoescape).

Pages and API (all JSON bodies; every POST must be ``Content-Type: application/json`` and, when the browser
says where it comes from, same-origin; a cross-site form or script cannot post a judgment):

- ``GET /annotate?annotator=NAME``: the next item, candidates in this annotator's order; A / B / tie or a
  ranking, an optional comment, skip, undo, keyboard shortcuts, progress
- ``GET /api/next?annotator=NAME`` → ``{"item": ID, "prompt", "candidates": [{"text"}, ...], "progress"}``
  (``"item": ""`` when the annotator is done)
- ``POST /api/judgments`` ``{"item", "annotator", "order": [shown positions, best first], "tie", "comment"}``
- ``POST /api/skip`` ``{"item", "annotator"}``, ``POST /api/undo`` ``{"annotator"}``

Security: bound to 127.0.0.1 by default, with the Host header checked (no DNS rebinding); any other host
needs a token, which every request then carries (``?token=`` on pages, an ``X-Label-Token`` header on API
calls). Every text is escaped (a completion ``<script>`` shows as text), the page runs only its own script
file (Content-Security-Policy), cannot be framed, and sends no referrer (the token stays in the page).
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from urllib.parse import parse_qs

from rl4text.label.store import LabelError, Store, check_annotator

HERE = Path(__file__).parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
STATIC = {"annotate.js": "text/javascript; charset=utf-8", "annotate.css": "text/css; charset=utf-8"}


class Guard:
    """ASGI middleware: Host allow-list, token, and the security headers on every response."""

    def __init__(self, app, *, token: str | None, allowed_hosts: set[str] | None):
        self.app, self.token, self.allowed_hosts = app, token, allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        problem = None
        if self.allowed_hosts is not None and headers.get("host", "") not in self.allowed_hosts:
            problem = (400, f"unexpected Host header {headers.get('host', '')!r}")
        elif self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = headers.get("x-label-token") or (query.get("token") or [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                problem = (
                    403,
                    "missing or wrong token: open the link with ?token=... that the organiser gave you",
                )
        if problem is not None:
            body = json.dumps({"error": problem[1]}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": problem[0],
                    "headers": [(b"content-type", b"application/json"), *SECURITY_HEADERS],
                }
            )
            return await send({"type": "http.response.body", "body": body})

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _error(status: int, message: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request) -> dict:
    """The POST body, only when it is same-origin JSON; raises :class:`PermissionError` / LabelError."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise TypeError(f"POST bodies must be Content-Type application/json, got {ctype or 'none'!r}")
    origin = request.headers.get("origin")
    expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != expected:
        raise PermissionError(f"cross-origin POST from {origin!r} refused (this server is {expected})")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise PermissionError("cross-site POST refused")
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelError(f"the body is not valid JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise LabelError("the body must be a JSON object")
    return body


def _api_routes(store: Store) -> list:
    """The JSON API; SQLite calls run in the thread pool, so concurrent annotators write concurrently (WAL
    serialises the commits)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def api(handler):
        async def endpoint(request):
            try:
                return JSONResponse(await handler(request))
            except TypeError as exc:
                return _error(415, str(exc))
            except PermissionError as exc:
                return _error(403, str(exc))
            except LabelError as exc:
                return _error(400, str(exc))

        return endpoint

    async def next_item(request):
        return await run_in_threadpool(store.next_item, request.query_params.get("annotator", ""))

    async def judgments(request):
        b = await _json_body(request)
        args = (b.get("item"), b.get("annotator"), b.get("order"), b.get("tie", False), b.get("comment", ""))
        return await run_in_threadpool(store.judge, *args)

    async def skip(request):
        b = await _json_body(request)
        return await run_in_threadpool(store.skip, b.get("item"), b.get("annotator"))

    async def undo(request):
        return await run_in_threadpool(store.undo, (await _json_body(request)).get("annotator"))

    return [
        Route("/api/next", api(next_item)),
        Route("/api/judgments", api(judgments), methods=["POST"]),
        Route("/api/skip", api(skip), methods=["POST"]),
        Route("/api/undo", api(undo), methods=["POST"]),
    ]


def _page_routes(store: Store) -> list:
    """The annotator's pages (Jinja2 with autoescape: every text is escaped) and the two static files."""
    import jinja2
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )

    def start_page(request, error: str = "", status: int = 200):
        context = {"token": request.query_params.get("token", ""), "mode": store.settings["mode"]}
        return HTMLResponse(env.get_template("start.html").render(error=error, **context), status_code=status)

    async def annotate(request):
        name = request.query_params.get("annotator", "")
        if not name:
            return start_page(request)
        try:
            check_annotator(name)
        except LabelError as exc:
            return start_page(request, str(exc), 400)
        data = await run_in_threadpool(store.next_item, name)
        context = {"token": request.query_params.get("token", ""), "mode": store.settings["mode"]}
        return HTMLResponse(env.get_template("annotate.html").render(annotator=name, data=data, **context))

    async def index(request):
        return start_page(request)

    async def static(request):
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response((HERE / "static" / name).read_text(), media_type=STATIC[name])

    return [Route("/", index), Route("/annotate", annotate), Route("/static/{name}", static)]


def create_app(folder: str | Path, *, token: str | None = None, allowed_hosts: set[str] | None = None):
    """The ASGI app serving the project in ``folder`` (behind :class:`Guard`)."""
    from starlette.applications import Starlette

    store = Store(folder)
    app = Starlette(routes=[*_page_routes(store), *_api_routes(store)])
    app.state.store = store
    return Guard(app, token=token, allowed_hosts=allowed_hosts)


def serve_checks(host: str, port: int, token: str | None) -> set[str] | None:
    """The Host allow-list for ``host``; raises LabelError when a non-loopback host has no token."""
    if host in LOOPBACK:
        return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if not token:
        raise LabelError(
            f"--host {host} exposes the app beyond this machine: pass --token SECRET (annotators then open "
            f"http://{host}:{port}/annotate?annotator=NAME&token=SECRET), or keep the default 127.0.0.1"
        )
    return None


def serve(folder: str | Path, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    import uvicorn

    allowed = serve_checks(host, port, token)
    app = create_app(folder, token=token, allowed_hosts=allowed)
    suffix = f"&token={token}" if token else ""
    print(f"annotators open: http://{host}:{port}/annotate?annotator=NAME{suffix}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
