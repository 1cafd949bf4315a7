"""Who may use the server and from where: HTTP Basic auth (--api-auth) and CORS (--cors-allow-origins)."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials


def basic_auth(users: dict[str, str]) -> Any:
    security = HTTPBasic()

    def check(credentials: HTTPBasicCredentials = Depends(security)) -> None:
        expected = users.get(credentials.username)
        if expected is None or not secrets.compare_digest(credentials.password, expected):
            raise HTTPException(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})

    return check
