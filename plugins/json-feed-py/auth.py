"""The `session` resource of the exported `auth` interface: one connection to a findings feed.

componentize-py looks for an exported interface's resources in a module named after the
interface, so this file must be called `auth.py`.
"""

from componentize_py_types import Err
from wit_world.exports import auth
from wit_world.imports import host_http, types
from wit_world.imports import secrets as wit_secrets

import feed


class Session(auth.Session):
    """Holds the settings and, once read, the feed's findings."""

    def __init__(self, url: str, token: "wit_secrets.Secret | None"):
        self.url = url
        self.token = token
        self._findings: list[types.Finding] | None = None

    def verify(self) -> types.Account:
        findings = self.findings()
        host = self.url.split("/")[2]
        return types.Account(
            id=host,
            display_name=host,
            details=[types.Setting(key="findings", value=str(len(findings)))],
        )

    def findings(self) -> list[types.Finding]:
        """The feed's findings, read once per session."""
        if self._findings is None:
            self._findings = feed.parse(self.fetch())
        return self._findings

    def fetch(self) -> bytes:
        headers = [host_http.Header(name="Accept", value="application/json")]
        # The host writes the sealed token into `Authorization`, only towards its bound hosts.
        authorization = (
            host_http.Authorization_Bearer(self.token) if self.token else host_http.Authorization_None_()
        )
        request = host_http.Request(
            method=host_http.Method.GET, url=self.url, headers=headers, sealed_headers=[],
            authorization=authorization, body=host_http.Body_Empty(), captures=[], timeout_ms=None,
        )
        try:
            response = host_http.send(request)
        except Err as e:
            raise Err(feed.transport_error(e.value, self.url))
        if response.status >= 400:
            raise Err(feed.status_error(response, self.url))
        return response.body

