"""The JSON findings feed: parsing rows into the contract's findings, errors, and paging.

```json
{"findings": [{"registry": "reg.example", "repository": "team/app", "digest": "sha256:…",
  "vulnerability_id": "CVE-2024-1234", "severity": "high", "title": "…", "description": "…",
  "package": "openssl", "installed_version": "3.0.1", "fixed_version": "3.0.2"}]}
```
"""

import base64
import json

from componentize_py_types import Err
from wit_world.imports import host_http, types

SEVERITIES = {
    "critical": types.Severity.CRITICAL,
    "high": types.Severity.HIGH,
    "medium": types.Severity.MEDIUM,
    "moderate": types.Severity.MEDIUM,
    "low": types.Severity.LOW,
    "info": types.Severity.INFORMATIONAL,
    "informational": types.Severity.INFORMATIONAL,
}


def unavailable(message: str):
    return types.ConnectorError_Unavailable(message)


def parse(body: bytes) -> list[types.Finding]:
    try:
        doc = json.loads(body)
        rows = doc["findings"]
        if not isinstance(rows, list):
            raise TypeError("`findings` is not a list")
        return [finding(row) for row in rows]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise Err(unavailable(f"the findings feed is not the expected JSON ({type(e).__name__}: {e})"))


def finding(row: dict) -> types.Finding:
    image = types.ImageRef(
        registry=str(row["registry"]), repository=str(row["repository"]), digest=str(row["digest"])
    )
    vuln = str(row["vulnerability_id"])
    fixed = row.get("fixed_version")
    package = None
    if row.get("package"):
        package = types.PackageInfo(
            name=str(row["package"]),
            version=row.get("installed_version"),
            fixed_version=fixed,
            fix_status=types.FixStatus.FIX_AVAILABLE if fixed else types.FixStatus.UNKNOWN,
            kind=None,
            ecosystem=None,
        )
    return types.Finding(
        image=image,
        vulnerability_id=vuln,
        source_id=None,
        title=str(row.get("title") or vuln),
        description=str(row.get("description") or ""),
        severity=SEVERITIES.get(str(row.get("severity", "")).lower(), types.Severity.UNKNOWN),
        cvss_score=None,
        cvss_vector=None,
        package=package,
        remediation=f"Upgrade to {fixed}." if fixed else None,
        evidence=[],
        references=[],
        published_at=None,
        modified_at=None,
        exploitability=types.Exploitability(
            exploit_published=False, exploit_verified=False, in_exploit_kit=False, types=[]
        ),
        weaknesses=[],
        raw=json.dumps(row, sort_keys=True),
    )


def transport_error(error, url: str):
    """Maps a `host-http` error to a connector error naming the URL (never its query)."""
    safe = url.split("?")[0]
    if isinstance(error, host_http.HttpError_Denied):
        return types.ConnectorError_PermissionDenied(
            f"the host refused the request to `{safe}`: {error.value}; grant it in `allowed_hosts`"
        )
    if isinstance(error, host_http.HttpError_Invalid):
        return types.ConnectorError_Other(f"the request to `{safe}` is malformed: {error.value}")
    return unavailable(f"`{safe}` could not be read ({type(error).__name__.split('_')[-1]})")


def status_error(response, url: str):
    safe = url.split("?")[0]
    status = response.status
    if status == 401:
        return types.ConnectorError_InvalidCredentials(f"`{safe}` rejected the token (HTTP 401)")
    if status == 403:
        return types.ConnectorError_PermissionDenied(f"`{safe}` refused access (HTTP 403)")
    if status == 404:
        return types.ConnectorError_NotFound(f"`{safe}` was not found (HTTP 404)")
    if status == 429:
        return types.ConnectorError_Throttled(10_000)
    if status >= 500:
        return unavailable(f"`{safe}` failed with HTTP {status}")
    return types.ConnectorError_Other(f"`{safe}` answered HTTP {status}")


def page(items: list, request: types.PageRequest):
    """Serves `items` in pages of `max-items`; the cursor is an opaque offset."""
    offset = 0
    if request.cursor is not None:
        try:
            state = json.loads(base64.urlsafe_b64decode(request.cursor.encode("ascii")))
            offset = int(state["o"])
        except (ValueError, KeyError, TypeError, UnicodeError):
            raise Err(types.ConnectorError_Other("the cursor was not made by this connector; start the listing again"))
        if offset < 0 or offset > len(items):
            raise Err(types.ConnectorError_Other("the cursor is past the end of the listing; start it again"))
    end = min(len(items), offset + max(1, request.max_items))
    nxt = None
    if end < len(items):
        nxt = base64.urlsafe_b64encode(json.dumps({"o": end}).encode()).decode("ascii")
    return items[offset:end], nxt
