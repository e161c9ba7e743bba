//! The imports of contract 0.2.0: sealed `secret` handles, `host-http` with requests that name
//! secrets instead of holding them, and `log`.
//!
//! A request is rendered here (each secret's value put where the request names it, encoded for
//! that place), handed to the egress gate with the secrets it carries so every hop is confined to
//! their hosts, and its response has captured credential fields taken out and every known secret
//! scrubbed before the guest sees a byte of it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keelson_core::HostPattern;
use wasmtime::component::Resource;

use super::HostState;
use crate::bindings::v0_2::{host_http, log, secrets, types};
use crate::sealed::{self, Piece, SealedSecret, Uses};

impl secrets::Host for HostState {}

impl secrets::HostSecret for HostState {
    async fn name(&mut self, secret: Resource<SealedSecret>) -> wasmtime::Result<String> {
        Ok(self.table.get(&secret)?.name.clone())
    }

    async fn hosts(&mut self, secret: Resource<SealedSecret>) -> wasmtime::Result<Vec<String>> {
        let secret = self.table.get(&secret)?;
        Ok(secret.hosts.iter().map(|h| h.as_str().to_owned()).collect())
    }

    async fn expires_at(
        &mut self,
        secret: Resource<SealedSecret>,
    ) -> wasmtime::Result<Option<u64>> {
        Ok(self.table.get(&secret)?.expires_at)
    }

    async fn drop(&mut self, secret: Resource<SealedSecret>) -> wasmtime::Result<()> {
        let secret = self.table.delete(secret)?;
        // Secret settings stay scrubbed for the whole store; a token the guest let go of can no
        // longer be sent, so its forms need not be searched for in every later response.
        if secret.captured {
            self.scrub.remove(&secret.value);
        }
        Ok(())
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.write_log(tracing_level(level), &message);
        Ok(())
    }
}

impl HostState {
    /// Puts `secret` in the resource table for the guest; its value is scrubbed from everything
    /// the guest is shown from now on.
    pub(crate) fn seal(
        &mut self,
        secret: SealedSecret,
    ) -> wasmtime::Result<Resource<SealedSecret>> {
        self.scrub.add(&secret.name, &secret.value);
        Ok(self.table.push(secret)?)
    }

    fn secret(
        &self,
        handle: &Resource<SealedSecret>,
    ) -> Result<SealedSecret, host_http::HttpError> {
        self.table
            .get(handle)
            .cloned()
            .map_err(|_| invalid("the request names a secret handle that is no longer valid"))
    }

    /// The request as the egress gate takes it: every secret in place, and the list of them.
    fn render(
        &self,
        request: &host_http::Request,
    ) -> Result<keelson_http::Request, host_http::HttpError> {
        let mut uses = Uses::default();
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let named = |headers: &[(String, String)], name: &str| {
            headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        for header in &request.sealed_headers {
            let parts = self.pieces(&header.value)?;
            let value = sealed::header_value(&header.name, &pieces(&parts), &mut uses)
                .map_err(|e| invalid(&e.to_string()))?;
            headers.push((header.name.clone(), value));
        }
        let authorization = match &request.authorization {
            host_http::Authorization::None => None,
            host_http::Authorization::Bearer(handle) => {
                let secret = self.secret(handle)?;
                Some(sealed::bearer(&secret, &mut uses).map_err(|e| invalid(&e.to_string()))?)
            }
            host_http::Authorization::Basic(basic) => {
                let user = self.pieces(&basic.user)?;
                let password = self.pieces(&basic.password)?;
                Some(sealed::basic(&pieces(&user), &pieces(&password), &mut uses))
            }
        };
        if let Some(value) = authorization {
            if named(&headers, "authorization") {
                return Err(invalid(
                    "the request sets `authorization` both as a header and as its authorization; use one",
                ));
            }
            headers.push(("authorization".to_owned(), value));
        }
        let mut content_type = |value: &str| {
            if !named(&headers, "content-type") {
                headers.push(("content-type".to_owned(), value.to_owned()));
            }
        };
        let body = match &request.body {
            host_http::Body::Empty => Vec::new(),
            host_http::Body::Bytes(bytes) => bytes.clone(),
            host_http::Body::Form(fields) => {
                let mut resolved = Vec::with_capacity(fields.len());
                for field in fields {
                    resolved.push((field.name.as_str(), self.pieces(&field.value)?));
                }
                content_type("application/x-www-form-urlencoded");
                sealed::form(
                    resolved.iter().map(|(name, parts)| (*name, pieces(parts))),
                    &mut uses,
                )
            }
            host_http::Body::Json(parts) => {
                let parts = self.pieces(parts)?;
                content_type("application/json");
                sealed::json(&pieces(&parts), &mut uses)
            }
        };
        Ok(keelson_http::Request {
            method: method(request.method),
            url: request.url.clone(),
            headers,
            body,
            timeout: request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
            sealed: uses.into_vec(),
        })
    }

    /// The parts with each handle looked up.
    fn pieces(&self, parts: &[host_http::Part]) -> Result<Vec<Resolved>, host_http::HttpError> {
        parts
            .iter()
            .map(|part| match part {
                host_http::Part::Text(text) => Ok(Resolved::Text(text.clone())),
                host_http::Part::Secret(handle) => self.secret(handle).map(Resolved::Secret),
            })
            .collect()
    }

    /// The hosts a token captured from a response to `url` may go to: those the request names,
    /// each inside the plugin's grant, or else the request's own origin.
    fn capture_hosts(
        &self,
        url: &str,
        capture: &host_http::Capture,
    ) -> Result<Vec<HostPattern>, host_http::HttpError> {
        let granted = self
            .egress
            .as_ref()
            .map_or(&[][..], |e| e.grant().allowed_hosts.as_slice());
        if capture.hosts.is_empty() {
            let origin = url
                .parse::<http::Uri>()
                .ok()
                .and_then(|uri| {
                    let scheme = uri.scheme_str()?.to_owned();
                    let authority = uri.authority()?;
                    let port = authority
                        .port_u16()
                        .or_else(|| keelson_core::default_port(&scheme))?;
                    HostPattern::parse(&format!("{scheme}://{}:{port}", authority.host())).ok()
                })
                .ok_or_else(|| invalid("the URL is not valid"))?;
            return Ok(vec![origin]);
        }
        // Each pattern as far as the grant allows: kept when inside a granted pattern, else
        // narrowed to the granted patterns inside it.
        let mut hosts: Vec<HostPattern> = Vec::new();
        for text in &capture.hosts {
            let pattern = HostPattern::parse(text)
                .map_err(|e| invalid(&format!("capture `{}`: {e}", capture.field)))?;
            if granted.iter().any(|g| pattern.within(g)) {
                hosts.push(pattern);
            } else {
                hosts.extend(granted.iter().filter(|g| g.within(&pattern)).cloned());
            }
        }
        if hosts.is_empty() {
            return Err(host_http::HttpError::Denied(format!(
                "capture-host-not-granted: no host named for capture `{}` ({}) is inside the plugin's allowed hosts",
                capture.field,
                capture.hosts.join(", ")
            )));
        }
        hosts.dedup();
        Ok(hosts)
    }
}

/// A part with its secret looked up.
enum Resolved {
    Text(String),
    Secret(SealedSecret),
}

fn pieces(parts: &[Resolved]) -> Vec<Piece<'_>> {
    parts
        .iter()
        .map(|part| match part {
            Resolved::Text(text) => Piece::Text(text),
            Resolved::Secret(secret) => Piece::Secret(secret),
        })
        .collect()
}

wit_mappings!();

fn invalid(reason: &str) -> host_http::HttpError {
    host_http::HttpError::Invalid(reason.to_owned())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl host_http::Host for HostState {
    async fn send(
        &mut self,
        request: host_http::Request,
    ) -> wasmtime::Result<Result<host_http::Response, host_http::HttpError>> {
        let Some(egress) = self.egress.clone() else {
            return Ok(Err(host_http::HttpError::Denied(
                "no-connection: requests are only allowed inside a connection".to_owned(),
            )));
        };
        let rendered = match self.render(&request) {
            Ok(rendered) => rendered,
            Err(e) => return Ok(Err(e)),
        };
        let mut capture_hosts = Vec::with_capacity(request.captures.len());
        for capture in &request.captures {
            match self.capture_hosts(&request.url, capture) {
                Ok(hosts) => capture_hosts.push(hosts),
                Err(e) => return Ok(Err(e)),
            }
        }
        let response = match egress.send(rendered, self.deadline).await {
            Ok(response) => response,
            Err(e) => return Ok(Err(http_error(e))),
        };
        let mut body = response.body;
        let mut captured = Vec::new();
        let fields: Vec<&str> = request.captures.iter().map(|c| c.field.as_str()).collect();
        if (200..300).contains(&response.status)
            && !fields.is_empty()
            && let Some((rest, found)) = sealed::capture(&body, &fields, now())
        {
            body = rest;
            for token in found {
                let index = fields.iter().position(|f| *f == token.field).unwrap_or(0);
                let handle = self.seal(SealedSecret {
                    name: token.field.clone(),
                    value: token.value,
                    hosts: capture_hosts[index].clone(),
                    expires_at: token.expires_at,
                    captured: true,
                })?;
                captured.push(host_http::Captured {
                    field: token.field,
                    value: handle,
                });
            }
        }
        // A reflecting endpoint, or an error that quotes a token, shows the guest nothing sealed.
        let body = self.scrub.bytes(&body);
        let headers = response
            .headers
            .into_iter()
            .map(|(name, value)| host_http::Header {
                value: self.scrub.text(&value),
                name,
            })
            .collect();
        Ok(Ok(host_http::Response {
            status: response.status,
            headers,
            body,
            captured,
        }))
    }
}
