"""Who may use the server and from where: HTTP Basic auth (--api-auth) and CORS (--cors-allow-origins)."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials


def basic_auth(users: dict[str, str]) -> Any:
    """A FastAPI dependency checking HTTP Basic credentials against `users` (user -> password).

    Constant time (hmac.compare_digest on UTF-8 bytes, any text): every user and password is compared, so
    the answer's timing tells neither whether a user exists nor how much of a password matched."""
    security = HTTPBasic()
    known = [(user.encode(), password.encode()) for user, password in users.items()]

    def check(credentials: HTTPBasicCredentials = Depends(security)) -> None:
        user, password = credentials.username.encode(), credentials.password.encode()
        match = False
        for known_user, known_password in known:
            match |= hmac.compare_digest(user, known_user) & hmac.compare_digest(password, known_password)
        if not match:
            raise HTTPException(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})

    return check


def add_cors(app: Any, origins: tuple[str, ...], origin_regex: str | None) -> None:
    """CORS headers for these origins only, as the WebUI's --cors-allow-origins(-regex); none without them."""
    from fastapi.middleware.cors import CORSMiddleware

    if not origins and not origin_regex:
        return
    app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_origin_regex=origin_regex or None,
                       allow_methods=["*"], allow_credentials=True, allow_headers=["*"])
