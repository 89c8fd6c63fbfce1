"""Fetching the registry's model keys from the control plane, to validate model fields."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

API_URL_ENV = "GALLEY_API_URL"
API_TOKEN_ENV = "GALLEY_API_TOKEN"
TIMEOUT_SECONDS = 10


class RegistryUnavailable(Exception):
    pass


def fetch_model_keys() -> list[str] | None:
    """Return the keys of ``GET $GALLEY_API_URL/api/internal/models``, or None without the variable.

    Raises RegistryUnavailable with the reason and the URL when the request fails.
    """
    base = os.environ.get(API_URL_ENV, "").strip()
    if not base:
        return None
    url = base.rstrip("/") + "/api/internal/models"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    token = os.environ.get(API_TOKEN_ENV)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    # The control plane runs on this machine; an HTTP proxy from the environment must not
    # see the request or its token.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        hint = f"; check {API_TOKEN_ENV}" if error.code in (401, 403) else ""
        raise RegistryUnavailable(f"GET {url} returned HTTP {error.code}{hint}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise RegistryUnavailable(
            f"GET {url} failed: {reason}; check that the control plane is running"
        ) from None
    except ValueError as error:
        raise RegistryUnavailable(f"GET {url} returned invalid JSON: {error}") from None
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        raise RegistryUnavailable(f"GET {url} returned no 'models' list")
    return [str(model["key"]) for model in models if isinstance(model, dict) and "key" in model]
