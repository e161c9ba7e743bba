//! Named anomalies: persistent structural faults that answer the way real Azure answers badly.
//!
//! Each [`Anomaly`] is switched on through [`FaultSpec::anomalies`](crate::FaultSpec::anomalies)
//! (at start, with `azure-sim --anomaly NAME`, or at run time with `PUT /_sim/faults`
//! `{"anomalies":["NAME",...]}`) and stays on until the spec is replaced. Each variant's docs say
//! what it answers; the handlers (`arg`, `arm`, `acr`) apply them after validating a request, so
//! authentication, api-version and query errors stay as they are. [`target_registry`] picks the
//! registry the one-registry anomalies hit, and [`AnomalyTruth`](crate::AnomalyTruth) says what a
//! correct client concludes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::tenant::Tenant;

/// A named structural fault that answers the way real Azure answers badly. It persists until
/// the fault spec is replaced; requests that fail validation keep their usual errors.
///
/// `AcrCatalogLoop` and `OneRegistryForbidden` hit one registry: the first, in ARM id order,
/// whose data plane is otherwise readable (public network, not denied) and that has at least one
/// repository ([`AnomalyTruth::target_registry`](crate::AnomalyTruth::target_registry) names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Anomaly {
    /// `arg-null-data`: every Resource Graph query answers
    /// `200 {"totalRecords":0,"count":0,"data":null}` with the usual headers.
    #[serde(rename = "arg-null-data")]
    ArgNullData,
    /// `arg-empty-after-full`: every Resource Graph query answers a well-formed 200 with zero
    /// rows (`data: []`, counts 0).
    #[serde(rename = "arg-empty-after-full")]
    ArgEmptyAfterFull,
    /// `arg-missing-status`: Resource Graph rows whose ordinal within their registry is a
    /// multiple of 5 (the first row of each registry, then every 5th) lack `properties.status`.
    #[serde(rename = "arg-missing-status")]
    ArgMissingStatus,
    /// `arm-nextlink-loop-at-end`: the ARM registry list serves every registry, then its last
    /// page carries a `nextLink` to itself, forever.
    #[serde(rename = "arm-nextlink-loop-at-end")]
    ArmNextlinkLoopAtEnd,
    /// `acr-catalog-loop`: the target registry's catalog (`/v2/_catalog`, `/acr/v1/_catalog`)
    /// ends its last page with a `Link` back to the first page (`last=` empty).
    #[serde(rename = "acr-catalog-loop")]
    AcrCatalogLoop,
    /// `one-registry-forbidden`: the target registry's token exchange succeeds but grants
    /// nothing, and every data-plane read answers `403 {"errors":[{"code":"DENIED",...}]}`;
    /// ARM still lists it and Resource Graph still reports its findings.
    #[serde(rename = "one-registry-forbidden")]
    OneRegistryForbidden,
    /// `arg-html-200`: every Resource Graph request answers an HTML error page with status 200.
    #[serde(rename = "arg-html-200")]
    ArgHtml200,
    /// `totals-mismatch`: every Resource Graph page has a `count` one more than the rows in
    /// `data` and a `totalRecords` one less than the rows the query has.
    #[serde(rename = "totals-mismatch")]
    TotalsMismatch,
}

/// Every name, comma-separated, for error messages and `--help`.
pub(crate) const NAMES: &str = "arg-null-data, arg-empty-after-full, arg-missing-status, arm-nextlink-loop-at-end, acr-catalog-loop, one-registry-forbidden, arg-html-200, totals-mismatch";

impl Anomaly {
    /// Every anomaly, in the order of the module table.
    pub const ALL: [Self; 8] = [
        Self::ArgNullData,
        Self::ArgEmptyAfterFull,
        Self::ArgMissingStatus,
        Self::ArmNextlinkLoopAtEnd,
        Self::AcrCatalogLoop,
        Self::OneRegistryForbidden,
        Self::ArgHtml200,
        Self::TotalsMismatch,
    ];

    /// The name used on the command line, in `PUT /_sim/faults` and in the ground truth.
    pub fn name(self) -> &'static str {
        match self {
            Self::ArgNullData => "arg-null-data",
            Self::ArgEmptyAfterFull => "arg-empty-after-full",
            Self::ArgMissingStatus => "arg-missing-status",
            Self::ArmNextlinkLoopAtEnd => "arm-nextlink-loop-at-end",
            Self::AcrCatalogLoop => "acr-catalog-loop",
            Self::OneRegistryForbidden => "one-registry-forbidden",
            Self::ArgHtml200 => "arg-html-200",
            Self::TotalsMismatch => "totals-mismatch",
        }
    }

    /// True for the anomalies that hit only the target registry.
    pub fn hits_one_registry(self) -> bool {
        matches!(self, Self::AcrCatalogLoop | Self::OneRegistryForbidden)
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Anomaly {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| Error::UnknownAnomaly(s.to_owned()))
    }
}

/// The registry that `acr-catalog-loop` and `one-registry-forbidden` hit: the first, in ARM id
/// order, whose data plane is otherwise readable (public network, not denied) and that has at
/// least one repository, so its catalog serves a page before it loops. `None` when no registry
/// qualifies; then those anomalies change nothing.
pub(crate) fn target_registry(tenant: &Tenant) -> Option<usize> {
    tenant.registries.iter().position(|r| {
        r.spec.public_network && !r.spec.data_plane_denied && !r.spec.repositories.is_empty()
    })
}

/// Every 5th row of a registry, starting with its first, loses `properties.status` under
/// `arg-missing-status`; `ordinal` counts the registry's rows in id order from 0.
pub(crate) fn strips_status(ordinal: u64) -> bool {
    ordinal.is_multiple_of(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for a in Anomaly::ALL {
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.name()));
            assert_eq!(serde_json::from_str::<Anomaly>(&json).unwrap(), a);
            assert_eq!(a.name().parse::<Anomaly>().unwrap(), a);
        }
        let joined: Vec<&str> = Anomaly::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(NAMES, joined.join(", "));
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_list() {
        let err = "arg-nul-data".parse::<Anomaly>().unwrap_err().to_string();
        assert!(err.contains("`arg-nul-data`"), "{err}");
        assert!(err.contains("arg-null-data, arg-empty-after-full"), "{err}");
    }

    #[test]
    fn the_target_skips_unreadable_and_empty_registries() {
        use crate::tenant::TenantSpec;
        let mut spec = TenantSpec::demo();
        // ARM id order follows the resource group, `rg-<name>`, so these sort first.
        let mut empty = spec.registries[0].clone();
        empty.name = "aaaempty".into();
        empty.resource_group = "rg-aaaempty".into();
        empty.repositories.clear();
        let mut denied = spec.registries[0].clone();
        denied.name = "aabdenied".into();
        denied.resource_group = "rg-aabdenied".into();
        denied.data_plane_denied = true;
        let mut private = spec.registries[0].clone();
        private.name = "aacprivate".into();
        private.resource_group = "rg-aacprivate".into();
        private.public_network = false;
        spec.registries.extend([empty, denied, private]);
        let t = Tenant::new(&spec, 1, |n| format!("{n}.azurecr.test:1")).unwrap();
        assert_eq!(t.registries[0].spec.name, "aaaempty");
        let i = target_registry(&t).expect("the demo registries qualify");
        assert_eq!(i, 3);
        assert_eq!(t.registries[i].spec.name, "contosodev");
        let none = TenantSpec {
            registries: spec.registries[3..].to_vec(),
            ..TenantSpec::demo()
        };
        let t = Tenant::new(&none, 1, |n| format!("{n}.azurecr.test:1")).unwrap();
        assert_eq!(target_registry(&t), None);
    }
}
