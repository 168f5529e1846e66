"""Error pages: JSON under /api and /webhooks and /files, HTML elsewhere; always a clear line."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.units import human_bytes
from app.web.pages import form_page
from app.web.uploads import fields_before_file

JSON_PREFIXES = ("/api", "/webhooks", "/files", "/callbacks")


def _wants_json() -> bool:
    return (
        request.path.startswith(JSON_PREFIXES)
        or request.accept_mimetypes.best == "application/json"
    )


def answer(code: int, message: str):
    if _wants_json():
        response = jsonify(error=message)
        response.status_code = code
        return response
    return render_template("error.html", code=code, message=message), code


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return answer(
            400, "the form's security token is missing or stale: reload the page and try again"
        )

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        if exc.description != RequestEntityTooLarge.description:
            return answer(413, exc.description)  # a view said what was too large
        limit = app.config["MAX_CONTENT_LENGTH"]
        message = (
            f"the upload is larger than the limit of {human_bytes(limit)}; nothing was stored. "
            "Choose a smaller file."
        )
        if request.method == "POST" and request.endpoint == "pages.upload" and not _wants_json():
            # The form again, with the message where the person is looking and the values
            # typed before the file (the form sends the file last; the file is not kept).
            sent = fields_before_file(request)
            values = {k: v for k, v in sent.items() if k == "pipeline" or k.startswith("param.")}
            return form_page(413, values=values, error=message)
        return answer(413, message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return answer(exc.code or 500, exc.description or exc.name)
