//! A connection's locations as the store has them from its scans: what everyone who may read
//! sees, with no plugin call. Listing them live through the plugin
//! ([`crate::Backend::locations`]) is an operator's action.

use keelson_scan::Selection;
use serde_json::Value;

use crate::{ApiError, AppState, LocationReport, RegistryLocation};

/// Where a [`LocationReport`] came from, as the API names it in `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The registries and repositories the connection's runs listed, from the store.
    Stored,
    /// Listed just now through the plugin.
    Live,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Live => "live",
        }
    }
}

/// The registries and repositories that runs of connection `name` listed and that are still
/// there (a complete read that no longer saw one removed it), each with what the selection
/// (the configuration file's rules, then the stored ones) scans.
pub(crate) fn stored(state: &AppState, name: &str) -> Result<LocationReport, ApiError> {
    let (stored_rules, known) = state.read(|s| {
        let connection = s
            .connection(name)?
            .ok_or_else(|| ApiError::not_found(format!("no connection named `{name}`")))?;
        Ok((connection.selection, s.known_locations(name)?))
    })?;
    let mut rules = state.backend().declared_rules(name);
    rules.extend(stored_rules);
    let selection = Selection::new(&rules).map_err(|e| {
        ApiError::invalid(format!(
            "the selection of `{name}` cannot be applied: {e}; set it again"
        ))
    })?;
    let registries = known
        .into_iter()
        .filter(|r| !r.removed)
        .map(|r| {
            let repositories = r
                .repositories
                .into_iter()
                .filter(|(_, removed)| !removed)
                .map(|(repository, _)| repository)
                .collect();
            RegistryLocation {
                last_seen: Some(r.last_seen),
                ..RegistryLocation::new(&selection, r.name, repositories)
            }
        })
        .collect();
    Ok(LocationReport { rules, registries })
}

/// `report` as the API answers it: with its `source`.
pub(crate) fn to_json(report: &LocationReport, source: Source) -> Value {
    let mut value = serde_json::to_value(report).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("source".to_owned(), Value::from(source.as_str()));
    }
    value
}
