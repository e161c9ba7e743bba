"""A Keelson connector in Python: findings from a JSON feed over HTTPS.

The registries, repositories and images are the ones the feed names; `scanning` returns its
findings. Built with componentize-py against `wit/v0.2.0/` (see `build.sh`).
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import secrets as wit_secrets
from wit_world.imports import types

import auth
import feed


def setting(key: str, label: str, help: str, secret: bool = False, required: bool = True):
    return types.SettingSpec(
        key=key, label=label, help=help, secret=secret, required=required,
        default_value=None, choices=[], only_when=None, secret_hosts=[],
    )


class Auth(exports.Auth):
    def describe(self) -> types.ConnectorInfo:
        return types.ConnectorInfo(
            id="json-feed",
            display_name="JSON findings feed",
            version="0.1.0",
            source_tool="JSON findings feed",
            settings=[
                setting("url", "Feed URL", "The `https://` URL of the JSON findings feed."),
                setting("token", "Token", "Bearer token for the feed, if it needs one.", secret=True, required=False),
            ],
            instructions="Export your scanner's findings as the JSON feed described in the "
            "plugin authors' guide, serve it over HTTPS, and grant its host in `allowed_hosts`.",
            suggested_hosts=[],
        )

    def connect(self, settings: list[types.Setting], secrets: list[wit_secrets.SecretSetting]) -> auth.Session:
        values = {s.key: s.value.strip() for s in settings if s.value.strip()}
        url = values.get("url")
        if not url:
            raise Err(types.ConnectorError_InvalidConfig("setting `url` is required"))
        if not url.startswith("https://") or "@" in url.split("/")[2]:
            raise Err(types.ConnectorError_InvalidConfig(f"setting `url` is `{url}`; expected an `https://` URL"))
        # The token is sealed: a handle the host writes into the request, never a string here.
        token = next((s.value for s in secrets if s.key == "token"), None)
        return auth.Session(url, token)


def registries(session: auth.Session) -> list[str]:
    return sorted({f.image.registry for f in session.findings()})


class Enumeration(exports.Enumeration):
    def list_registries(self, session: auth.Session, page: types.PageRequest) -> types.RegistryPage:
        items, nxt = feed.page(registries(session), page)
        return types.RegistryPage(
            items=[
                types.Registry(name=r, source_id=r, display_name=r, location=None, tier=None,
                               public_network_access=None, attributes=[])
                for r in items
            ],
            next=nxt,
            gaps=[],
        )

    def list_repositories(self, session: auth.Session, registry: str, page: types.PageRequest) -> types.RepositoryPage:
        if registry not in registries(session):
            raise Err(types.ConnectorError_NotFound(f"the feed names no registry `{registry}`"))
        names = sorted({f.image.repository for f in session.findings() if f.image.registry == registry})
        items, nxt = feed.page(names, page)
        return types.RepositoryPage(
            items=[types.Repository(registry=registry, name=n, updated_at=None) for n in items], next=nxt,
            gaps=[],
        )

    def list_images(self, session: auth.Session, registry: str, repository: str, page: types.PageRequest) -> types.ImagePage:
        digests = sorted({
            f.image.digest for f in session.findings()
            if f.image.registry == registry and f.image.repository == repository
        })
        if not digests:
            raise Err(types.ConnectorError_NotFound(f"the feed names no repository `{registry}/{repository}`"))
        items, nxt = feed.page(digests, page)
        return types.ImagePage(
            items=[
                types.Image(image_ref=types.ImageRef(registry=registry, repository=repository, digest=d),
                            tags=[], media_type=None, platform=None, children=[], size_bytes=None,
                            created_at=None, updated_at=None)
                for d in items
            ],
            next=nxt,
            gaps=[],
        )


class Scanning(exports.Scanning):
    def list_findings(self, session: auth.Session, scope: types.ScanScope, page: types.PageRequest) -> types.FindingPage:
        wanted = set(scope.registries)
        selected = [f for f in session.findings() if not wanted or f.image.registry in wanted]
        items, nxt = feed.page(selected, page)
        return types.FindingPage(items=items, next=nxt, gaps=[])


class Enrichment(exports.Enrichment):
    def describe_images(self, session: auth.Session, images: list[types.ImageRef]) -> list[types.ImageContext]:
        return []
