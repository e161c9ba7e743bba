use std::collections::BTreeSet;

use azure_sim::{Limits, Scenario, SimOptions};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::common::{assert_shape, sample, start};

fn recording(name: &str, index: usize) -> serde_json::Value {
    sample(name)["Entries"][index].clone()
}

#[tokio::test]
async fn challenge_exchange_token_and_catalog_match_the_recording() {
    let env = start(SimOptions::new(Scenario::Small)).await;
    let login = env.sim.login_server("fabrikamapps").unwrap();
    let catalog = format!("https://{login}/acr/v1/_catalog?n=1&api-version=2021-07-01");

    let r = env.get(&catalog, None).await;
    let rec = recording("acr-recording-list-repositories-by-pages.json", 0);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        rec["ResponseBody"],
        "challenge body is the recorded one"
    );
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        format!(
            "Bearer realm=\"https://{login}/oauth2/token\",service=\"{login}\",scope=\"registry:catalog:*\""
        )
    );
    for h in [
        "server",
        "docker-distribution-api-version",
        "x-ms-correlation-request-id",
        "strict-transport-security",
        "x-content-type-options",
    ] {
        assert!(r.header(h).is_some(), "{h}");
    }
    assert_eq!(r.header("server").as_deref(), Some("openresty"));
    assert_eq!(
        r.header_all("access-control-expose-headers"),
        [
            "Docker-Content-Digest",
            "WWW-Authenticate",
            "Link",
            "X-Ms-Correlation-Request-Id"
        ]
    );

    let arm = env.arm_token().await;
    let ex = env
        .post_form(
            &format!("https://{login}/oauth2/exchange?api-version=2021-07-01"),
            &[
                ("grant_type", "access_token"),
                ("service", &login),
                ("access_token", &arm),
            ],
        )
        .await;
    assert_eq!(ex.status, 200, "{}", ex.text);
    let expected =
        &sample("acr-dataplane-PostRefreshToken-2021-07-01.json")["responses"]["200"]["body"];
    assert_shape(expected, &ex.json(), "exchange", &[], &[]);
    assert!(
        ex.header("x-ms-ratelimit-remaining-calls-per-second")
            .is_some()
    );

    let token = env.acr_token_with(&arm, &login, "registry:catalog:*").await;
    let mut url = catalog.clone();
    let mut repos = Vec::new();
    let mut links = Vec::new();
    loop {
        let r = env.get(&url, Some(&token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_shape(
            &recording("acr-recording-list-repositories-by-pages.json", 3)["ResponseBody"],
            &r.json(),
            "catalog",
            &[],
            &[],
        );
        repos.extend(
            r.json()["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned()),
        );
        match r.header("link") {
            Some(link) => {
                links.push(link.clone());
                let path = link
                    .strip_prefix('<')
                    .unwrap()
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned();
                url = format!("https://{login}{path}");
            }
            None => break,
        }
    }
    assert_eq!(
        links[0],
        "</acr/v1/_catalog?last=apps%2Fapi&n=1&orderby=>; rel=\"next\""
    );
    let truth: BTreeSet<String> = env
        .sim
        .ground_truth()
        .images()
        .filter(|i| i.login_server == login)
        .map(|i| i.repository)
        .collect();
    assert_eq!(repos.iter().cloned().collect::<BTreeSet<_>>(), truth);
    assert!(repos.windows(2).all(|w| w[0] < w[1]));

    let v2 = env
        .get(&format!("https://{login}/v2/_catalog?n=2"), Some(&token))
        .await;
    assert_eq!(v2.status, 200);
    assert!(
        v2.header("link")
            .unwrap()
            .starts_with("</v2/_catalog?last=")
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn tags_and_manifests_page_and_match_the_samples() {
    let env = start(SimOptions::new(Scenario::Small)).await;
    let login = env.sim.login_server("fabrikamapps").unwrap();
    let repo = "library/hello-world";
    let token = env
        .acr_token(&login, &format!("repository:{repo}:metadata_read"))
        .await;

    let r = env
        .get(
            &format!("https://{login}/acr/v1/library%2Fhello-world/_tags?n=2"),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let expected = &sample("acr-dataplane-GetTagList-2021-07-01.json")["responses"]["200"]["body"];
    assert_shape(expected, &r.json(), "tags", &["signed"], &[]);
    assert_eq!(r.json()["registry"], login.as_str());
    assert_eq!(r.json()["imageName"], repo);
    let link = r.header("link").unwrap();
    assert!(
        link.starts_with("</acr/v1/library%2Fhello-world/_tags?last=")
            && link.ends_with("&n=2&orderby=>; rel=\"next\""),
        "{link}"
    );

    let mut url = format!(
        "https://{login}/acr/v1/library%2Fhello-world/_manifests?n=1&api-version=2021-07-01"
    );
    let manifest_sample =
        &recording("acr-recording-list-manifests-by-pages.json", 3)["ResponseBody"];
    let list_sample =
        &sample("acr-dataplane-GetManifestList-2021-07-01.json")["responses"]["200"]["body"];
    let mut digests = Vec::new();
    loop {
        let r = env.get(&url, Some(&token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        // Untagged manifests omit `tags`; the recording's manifests have no tags at all.
        assert_shape(
            manifest_sample,
            &body,
            "manifests",
            &["tags", "configMediaType"],
            &[],
        );
        assert_shape(
            list_sample,
            &body,
            "manifests",
            &["mediaType", "configMediaType"],
            &["tags"],
        );
        digests.extend(
            body["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["digest"].as_str().unwrap().to_owned()),
        );
        match r.header("link") {
            Some(link) => {
                assert!(link.contains("last=sha256%3A"), "{link}");
                url = format!(
                    "https://{login}{}",
                    link.strip_prefix('<').unwrap().split('>').next().unwrap()
                );
            }
            None => break,
        }
    }
    let truth: Vec<String> = env
        .sim
        .ground_truth()
        .images()
        .filter(|i| i.login_server == login && i.repository == repo)
        .map(|i| i.digest)
        .collect();
    assert_eq!(digests.len(), truth.len());
    assert_eq!(
        digests.iter().collect::<BTreeSet<_>>(),
        truth.iter().collect::<BTreeSet<_>>()
    );
    assert!(
        digests.windows(2).all(|w| w[0] < w[1]),
        "manifests come sorted by digest"
    );

    let attrs = env
        .get(
            &format!("https://{login}/acr/v1/library%2Fhello-world"),
            Some(&token),
        )
        .await;
    assert_eq!(attrs.status, 200);
    assert_eq!(attrs.json()["manifestCount"], truth.len());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn manifests_by_tag_and_digest_carry_the_content_digest() {
    let env = start(SimOptions::new(Scenario::Demo)).await;
    let login = env.sim.login_server("contosoprod").unwrap();
    let repo = "payments/api";
    let token = env
        .acr_token(&login, &format!("repository:{repo}:pull"))
        .await;

    let r = env
        .get(
            &format!("https://{login}/v2/{repo}/tags/list"),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"], repo);
    assert!(
        r.json()["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "latest")
    );

    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.container.image.v1+json";
    let r = env
        .send(
            env.http
                .get(format!("https://{login}/v2/{repo}/manifests/latest"))
                .bearer_auth(&token)
                .header("accept", accept)
                .header("x-ms-client-request-id", "abc"),
        )
        .await;
    assert_eq!(r.status, 200);
    let digest = r.header("docker-content-digest").unwrap();
    assert_eq!(
        digest,
        format!("sha256:{}", hex::encode(Sha256::digest(r.text.as_bytes())))
    );
    assert_eq!(r.header("etag").unwrap(), format!("\"{digest}\""));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    assert_eq!(r.header("x-ms-client-request-id").as_deref(), Some("abc"));
    let rec = recording("acr-recording-get-manifest-excerpt.json", 0);
    assert_shape(&rec["ResponseBody"], &r.json(), "manifest", &[], &[]);
    for h in rec["ResponseHeaders"].as_object().unwrap().keys() {
        if !matches!(h.as_str(), "Connection" | "Date") {
            assert!(r.header(h).is_some(), "missing header {h}");
        }
    }

    let by_digest = env
        .get(
            &format!(
                "https://{login}/v2/payments%2Fapi/manifests/{}",
                digest.replace(':', "%3A")
            ),
            Some(&token),
        )
        .await;
    assert_eq!(by_digest.status, 200);
    assert_eq!(by_digest.text, r.text);
    let head = env
        .send(
            env.http
                .head(format!("https://{login}/v2/{repo}/manifests/{digest}"))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(head.status, 200);
    assert!(head.text.is_empty());
    assert_eq!(
        head.header("content-length").unwrap(),
        r.text.len().to_string()
    );
    assert_eq!(head.header("docker-content-digest").unwrap(), digest);

    let missing = env
        .get(
            &format!("https://{login}/v2/{repo}/manifests/no-such-tag"),
            Some(&token),
        )
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");
    let other = env.acr_token(&login, "repository:nope/none:pull").await;
    let unknown = env
        .get(
            &format!("https://{login}/v2/nope/none/tags/list"),
            Some(&other),
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json(),
        json!({"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"nope/none"}}]})
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn scopes_audiences_and_permissions_are_enforced() {
    let mut opts = SimOptions::new(Scenario::Hostile);
    opts.faults = azure_sim::FaultSpec::default();
    opts.tenant.registries[0].aad_as_arm = false;
    let env = start(opts).await;
    let apps = env.sim.login_server("fabrikamapps").unwrap();
    let login_of = |n: &str| env.sim.login_server(n).unwrap();

    // A catalog token does not open a repository.
    let other = login_of("fabrikambase");
    let catalog = env.acr_token(&other, "registry:catalog:*").await;
    let r = env
        .get(
            &format!("https://{other}/acr/v1/base%2Fdebian/_tags"),
            Some(&catalog),
        )
        .await;
    assert_eq!(r.status, 401);
    let www = r.header("www-authenticate").unwrap();
    assert!(
        www.ends_with(
            ",scope=\"repository:base/debian:metadata_read\",error=\"insufficient_scope\""
        ),
        "{www}"
    );
    assert_eq!(
        r.json()["errors"][0]["detail"],
        json!([{"Type":"repository","Name":"base/debian","Action":"metadata_read"}])
    );
    let bad = env
        .get(&format!("https://{other}/acr/v1/_catalog"), Some("garbage"))
        .await;
    assert!(
        bad.header("www-authenticate")
            .unwrap()
            .ends_with(",error=\"invalid_token\"")
    );

    // The registry with azureADAuthenticationAsArmPolicy disabled wants the ACR audience.
    let arm = env.arm_token().await;
    let ex = env
        .post_form(
            &format!("https://{apps}/oauth2/exchange"),
            &[
                ("grant_type", "access_token"),
                ("service", &apps),
                ("access_token", &arm),
            ],
        )
        .await;
    assert_eq!(ex.status, 401);
    let acr_aud = env
        .token_for(
            &env.sim.credentials(),
            "https://containerregistry.azure.net/.default",
        )
        .await;
    let token = env
        .acr_token_with(&acr_aud, &apps, "registry:catalog:*")
        .await;
    assert_eq!(
        env.get(&format!("https://{apps}/acr/v1/_catalog"), Some(&token))
            .await
            .status,
        200
    );

    // A registry the principal may not read, and a private one.
    let secret = login_of("fabrikamsecret");
    let t = env.acr_token(&secret, "registry:catalog:*").await;
    let r = env
        .get(&format!("https://{secret}/acr/v1/_catalog"), Some(&t))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errors"][0]["code"], "DENIED");
    let private = login_of("fabrikamprivate");
    let r = env
        .get(&format!("https://{private}/acr/v1/_catalog"), None)
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("is not allowed access")
    );

    // A principal without a role gets tokens but no data.
    let norole = env
        .token_for(
            &env.sim.no_role_client(),
            "https://management.azure.com/.default",
        )
        .await;
    let t = env
        .acr_token_with(&norole, &other, "registry:catalog:*")
        .await;
    assert_eq!(
        env.get(&format!("https://{other}/acr/v1/_catalog"), Some(&t))
            .await
            .status,
        403
    );

    // An empty registry lists `null`.
    let empty = login_of("fabrikamempty");
    let t = env.acr_token(&empty, "registry:catalog:*").await;
    let r = env
        .get(&format!("https://{empty}/acr/v1/_catalog"), Some(&t))
        .await;
    assert_eq!(r.json(), json!({"repositories": null}));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn basic_registry_answers_429_past_its_read_ops() {
    let mut opts = SimOptions::new(Scenario::Small);
    opts.limits = Limits {
        acr_read_ops: [6, 1000, 1000],
        ..Limits::default()
    };
    let env = start(opts).await;
    let basic = env.sim.login_server("fabrikambase").unwrap();
    // Exchange and token use two of the six operations.
    let token = env.acr_token(&basic, "registry:catalog:*").await;
    for _ in 0..4 {
        assert_eq!(
            env.get(&format!("https://{basic}/acr/v1/_catalog"), Some(&token))
                .await
                .status,
            200
        );
    }
    let r = env
        .get(&format!("https://{basic}/acr/v1/_catalog"), Some(&token))
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["errors"][0]["code"], "TOOMANYREQUESTS");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // A Standard registry on the same simulator is unaffected.
    let standard = env.sim.login_server("fabrikamapps").unwrap();
    let t = env.acr_token(&standard, "registry:catalog:*").await;
    assert_eq!(
        env.get(&format!("https://{standard}/acr/v1/_catalog"), Some(&t))
            .await
            .status,
        200
    );
    env.sim.shutdown().await;
}
