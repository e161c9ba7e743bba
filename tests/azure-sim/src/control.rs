//! Control routes under `/_sim/` on the management host, for tests and demo scripts that drive
//! the simulator from outside the process. They need no token.
//!
//! - `GET /_sim/stats`, `POST /_sim/stats/reset`
//! - `GET /_sim/faults`, `PUT /_sim/faults` (a [`FaultSpec`] as JSON; it replaces the active
//!   spec, so `{"anomalies":["arg-null-data"]}` turns that [`Anomaly`](crate::Anomaly) on and
//!   everything else off, and `{}` turns every fault off)
//! - `POST /_sim/images/remove`, `POST /_sim/images/repush`: `{"registry","repository","digest"}` or `{"share":0.01}`
//! - `POST /_sim/images/push`: `{"registry","repository","count"}`
//! - `POST /_sim/findings/fix`: `{"registry","repository","digest","vulnerability_id","package"}` or `{"share":0.1}`
//! - `GET /_sim/ground-truth`: [`GroundTruth::write_json`], with the `anomaly` section when one is on

use serde::Deserialize;
use serde_json::json;

use crate::Error;
use crate::faults::FaultSpec;
use crate::server::{Req, Resp, Sim};
use crate::truth::GroundTruth;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Target {
    registry: Option<String>,
    repository: Option<String>,
    digest: Option<String>,
    vulnerability_id: Option<String>,
    package: Option<String>,
    share: Option<f64>,
    count: Option<u32>,
}

fn fail(status: u16, e: &Error) -> Resp {
    Resp::json(status, &json!({"error": e.to_string()}))
}

fn bad(msg: &str) -> Resp {
    Resp::json(400, &json!({"error": msg}))
}

fn status_of(e: &Error) -> u16 {
    match e {
        Error::UnknownRegistry(_)
        | Error::UnknownRepository(_)
        | Error::UnknownDigest(_)
        | Error::UnknownFinding(_) => 404,
        _ => 400,
    }
}

pub(crate) fn handle(sim: &Sim, req: &Req) -> Resp {
    let tenant = &sim.tenant;
    let target = || -> Result<Target, Box<Resp>> {
        if req.body.is_empty() {
            return Ok(Target::default());
        }
        serde_json::from_slice(&req.body).map_err(|e| Box::new(bad(&format!("invalid body: {e}"))))
    };
    let image_id = |tgt: &Target| match (&tgt.registry, &tgt.repository, &tgt.digest) {
        (Some(reg), Some(repo), Some(digest)) => Some((reg.clone(), repo.clone(), digest.clone())),
        _ => None,
    };
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_sim/stats") => Resp::json(200, &sim.stats.snapshot()),
        ("POST", "/_sim/stats/reset") => {
            sim.stats.reset();
            Resp::json(200, &json!({}))
        }
        ("GET", "/_sim/faults") => Resp::json(200, &sim.faults()),
        ("PUT" | "POST", "/_sim/faults") => match serde_json::from_slice::<FaultSpec>(&req.body) {
            Ok(spec) => {
                sim.set_faults(spec.clone());
                Resp::json(200, &spec)
            }
            Err(e) => bad(&format!("invalid fault spec: {e}")),
        },
        ("GET", "/_sim/ground-truth") => {
            let mut buf = Vec::new();
            match GroundTruth::new(tenant.clone(), &sim.faults()).write_json(&mut buf) {
                Ok(_) => Resp::new(200, "application/json; charset=utf-8", buf),
                Err(e) => bad(&e.to_string()),
            }
        }
        ("POST", "/_sim/images/remove" | "/_sim/images/repush") => {
            let tgt = match target() {
                Ok(tgt) => tgt,
                Err(resp) => return *resp,
            };
            let repush = req.path.ends_with("repush");
            if let Some(share) = tgt.share {
                let n = if repush {
                    tenant.repush_share(share)
                } else {
                    tenant.remove_share(share)
                };
                return Resp::json(200, &json!({"images": n}));
            }
            let Some((reg, repo, digest)) = image_id(&tgt) else {
                return bad("give `share` or `registry`, `repository` and `digest`");
            };
            let out = if repush {
                tenant
                    .repush_image(&reg, &repo, &digest)
                    .map(|d| json!({"digest": d}))
            } else {
                tenant
                    .remove_image(&reg, &repo, &digest)
                    .map(|()| json!({"images": 1}))
            };
            match out {
                Ok(v) => Resp::json(200, &v),
                Err(e) => fail(status_of(&e), &e),
            }
        }
        ("POST", "/_sim/images/push") => {
            let tgt = match target() {
                Ok(tgt) => tgt,
                Err(resp) => return *resp,
            };
            let (Some(reg), Some(repo)) = (&tgt.registry, &tgt.repository) else {
                return bad("give `registry`, `repository` and `count`");
            };
            match tenant.push_images(reg, repo, tgt.count.unwrap_or(1)) {
                Ok(d) => Resp::json(200, &json!({"digests": d})),
                Err(e) => fail(status_of(&e), &e),
            }
        }
        ("POST", "/_sim/findings/fix") => {
            let tgt = match target() {
                Ok(tgt) => tgt,
                Err(resp) => return *resp,
            };
            if let Some(share) = tgt.share {
                return Resp::json(200, &json!({"findings": tenant.fix_share(share)}));
            }
            let (Some((reg, repo, digest)), Some(v), Some(p)) =
                (image_id(&tgt), &tgt.vulnerability_id, &tgt.package)
            else {
                return bad(
                    "give `share` or `registry`, `repository`, `digest`, `vulnerability_id` and `package`",
                );
            };
            match tenant.fix_finding(&reg, &repo, &digest, v, p) {
                Ok(()) => Resp::json(200, &json!({"findings": 1})),
                Err(e) => fail(status_of(&e), &e),
            }
        }
        _ => Resp::json(
            404,
            &json!({"error": format!("no control route `{} {}`", req.method, req.path)}),
        ),
    }
}
