#!/usr/bin/env python3
"""Peer baseline for the Keelson benchmark: what a user would write with the official Azure SDK.

Pulls the registries (ARM), every repository and image (the ACR data plane) and the Defender
vulnerability findings (Resource Graph) of one subscription into SQLite, with the SDK's defaults:
azure-identity for the service principal, azure-mgmt-containerregistry, azure-containerregistry
and azure-mgmt-resourcegraph. Prints one JSON line with what it stored.

Two concessions to the simulator, and only these:
- the simulator's CA is trusted through REQUESTS_CA_BUNDLE / SSL_CERT_FILE (set by the caller);
- its host names (`*.<suffix>`) are resolved to loopback by wrapping socket.getaddrinfo below,
  the in-process equivalent of an /etc/hosts entry. Everything else is stock SDK behaviour,
  including its retry policy on 429 (it honours Retry-After).

The secret comes from AZURE_CLIENT_SECRET, never from the command line.
"""

import argparse
import json
import os
import socket
import sqlite3
import sys

INDIVIDUAL_QUERY = """securityresources
| where type == "microsoft.security/assessments"
| where properties.metadata.recommendationCategory == "SoftwareUpdate"
| where properties.resourceDetails.ResourceType == ".containerimage"
| where properties.resourceDetails.Source == "Azure"
| project id, name, type, subscriptionId, resourceGroup, properties
| order by id asc"""

ACR_AUDIENCE = "https://containerregistry.azure.net"


def pin_names(suffix, address):
    """Resolves `<suffix>` and `*.<suffix>` to `address`, like an /etc/hosts entry."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name and (name == suffix or name.endswith("." + suffix)):
            return real(address, *args, **kwargs)
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def schema(db):
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS registries (
            id TEXT PRIMARY KEY, name TEXT, login_server TEXT, sku TEXT, location TEXT);
        CREATE TABLE IF NOT EXISTS images (
            registry TEXT, repository TEXT, digest TEXT, tags TEXT, created_on TEXT,
            architecture TEXT, os TEXT, PRIMARY KEY (registry, repository, digest));
        CREATE TABLE IF NOT EXISTS findings (
            assessment_id TEXT, cve TEXT, registry TEXT, repository TEXT, digest TEXT,
            package TEXT, version TEXT, fixed_version TEXT, severity TEXT, raw TEXT,
            PRIMARY KEY (assessment_id, cve));
        """
    )


def lower_keys(value):
    if isinstance(value, dict):
        return {k.lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


def decoded(value):
    """Defender serialises some nested objects and lists as JSON strings."""
    if isinstance(value, str) and value[:1] in "[{":
        return lower_keys(json.loads(value))
    return value


def findings_of(row):
    """One row per (image, package); one finding per CVE in it, when the row is Unhealthy."""
    props = lower_keys(row.get("properties") or {})
    if ((props.get("status") or {}).get("code") or "").lower() != "unhealthy":
        return []
    image = decoded(props.get("resourceadditionaldata")) or {}
    repo = (image.get("repositorydetails") or {}).get("repositoryname") or image.get("repositoryname")
    registry = (image.get("registryhost") or "").split(".")[0]
    add = props.get("additionaldata") or {}
    versions = decoded(add.get("detectedsoftwareversions")) or [None]
    raw = json.dumps(row, separators=(",", ":"))
    out = []
    for cve in decoded(add.get("cvesdetails")) or []:
        out.append(
            (
                row["id"],
                cve.get("cveid"),
                registry,
                repo,
                image.get("digest"),
                add.get("softwarename"),
                versions[0],
                cve.get("fixedversion") or add.get("fixedversion"),
                cve.get("severity") or (props.get("metadata") or {}).get("severity"),
                raw,
            )
        )
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenant-id", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--subscription-id", required=True)
    ap.add_argument("--authority", required=True, help="Entra authority host, e.g. https://login.microsoftonline.com")
    ap.add_argument("--management", required=True, help="ARM endpoint, e.g. https://management.azure.com")
    ap.add_argument("--pin", help="SUFFIX=ADDRESS: resolve *.SUFFIX to ADDRESS (the simulator)")
    ap.add_argument("--db", required=True)
    args = ap.parse_args()
    if args.pin:
        suffix, address = args.pin.split("=", 1)
        pin_names(suffix, address)

    from azure.containerregistry import ContainerRegistryClient
    from azure.identity import ClientSecretCredential
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt.resourcegraph import ResourceGraphClient
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    management = args.management.rstrip("/")
    arm_scope = management + "/.default"
    credential = ClientSecretCredential(
        args.tenant_id,
        args.client_id,
        os.environ["AZURE_CLIENT_SECRET"],
        authority=args.authority,
        # A sovereign or private cloud is not in MSAL's list of known authorities.
        disable_instance_discovery=True,
    )
    db = sqlite3.connect(args.db)
    schema(db)
    counts = {"registries": 0, "repositories": 0, "images": 0, "findings": 0}

    # Pinned to the registries API version the simulator serves; the SDK's default (2025-11-01)
    # is newer than the simulator's list. The response shape is the same.
    arm = ContainerRegistryManagementClient(
        credential,
        args.subscription_id,
        base_url=management,
        credential_scopes=[arm_scope],
        api_version="2025-04-01",
    )
    registries = list(arm.registries.list())
    db.executemany(
        "INSERT OR REPLACE INTO registries VALUES (?, ?, ?, ?, ?)",
        [(r.id, r.name, r.login_server, r.sku.name if r.sku else None, r.location) for r in registries],
    )
    db.commit()
    counts["registries"] = len(registries)

    for r in registries:
        acr = ContainerRegistryClient("https://" + r.login_server, credential, audience=ACR_AUDIENCE)
        for repo in acr.list_repository_names():
            counts["repositories"] += 1
            rows = []
            for m in acr.list_manifest_properties(repo):
                rows.append(
                    (r.name, repo, m.digest, json.dumps(m.tags or []),
                     m.created_on.isoformat() if m.created_on else None,
                     str(m.architecture) if m.architecture else None,
                     str(m.operating_system) if m.operating_system else None)
                )
            db.executemany("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.commit()
            counts["images"] += len(rows)
        acr.close()

    graph = ResourceGraphClient(credential, base_url=management, credential_scopes=[arm_scope])
    skip_token = None
    while True:
        options = QueryRequestOptions(top=1000, skip_token=skip_token, result_format="objectArray")
        result = graph.resources(
            QueryRequest(subscriptions=[args.subscription_id], query=INDIVIDUAL_QUERY, options=options)
        )
        rows = [f for row in result.data for f in findings_of(row)]
        db.executemany("INSERT OR REPLACE INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.commit()
        counts["findings"] += len(rows)
        skip_token = result.skip_token
        if not skip_token:
            break

    db.close()
    json.dump(counts, sys.stdout)
    print()


if __name__ == "__main__":
    main()
