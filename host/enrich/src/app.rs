//! Ownership: `[[application]]` rules map images (`registry/repository[:tag]`) to an application,
//! its service, team, environment, internet exposure and business criticality.
//!
//! Rules are tried by ascending `priority` (default [`Application::DEFAULT_PRIORITY`]), ties in
//! the order written; the first rule with a matching glob wins. A glob without a `:tag` part is
//! matched against `registry/repository`; one whose last segment holds `:` is matched against
//! `registry/repository:tag` for each of the image's tags. An image no rule matches is unmapped.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::glob::glob_match;

/// Where an application runs. Only `production` counts as production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Production,
    Staging,
    Test,
    Development,
}

impl Environment {
    pub const ALL: [Environment; 4] = [
        Environment::Production,
        Environment::Staging,
        Environment::Test,
        Environment::Development,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Test => "test",
            Self::Development => "development",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| Error::BadEnvironment(s.to_owned()))
    }
}

/// How much the business depends on an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Criticality {
    Low,
    Medium,
    High,
    Critical,
}

impl Criticality {
    pub const ALL: [Criticality; 4] = [
        Criticality::Low,
        Criticality::Medium,
        Criticality::High,
        Criticality::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Criticality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Criticality {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| Error::BadCriticality(s.to_owned()))
    }
}

/// One `[[application]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub name: String,
    pub service: Option<String>,
    pub team: Option<String>,
    pub environment: Option<Environment>,
    /// Reachable from the internet; `None` when the operator did not say.
    pub internet_exposed: Option<bool>,
    pub business_criticality: Option<Criticality>,
    /// Globs over `registry/repository` or `registry/repository:tag`.
    pub matches: Vec<String>,
    /// Lower is tried first.
    pub priority: u32,
}

impl Application {
    pub const DEFAULT_PRIORITY: u32 = 100;

    /// Whether this rule claims the image `registry/repository` carrying `tags`; returns the
    /// glob that matched.
    pub fn matched(&self, registry: &str, repository: &str, tags: &[String]) -> Option<&str> {
        let path = format!("{registry}/{repository}");
        self.matches
            .iter()
            .find(|glob| {
                let last = glob.rsplit('/').next().unwrap_or(glob);
                if last.contains(':') && glob.contains('/') {
                    tags.iter()
                        .any(|tag| glob_match(glob, &format!("{path}:{tag}")))
                } else {
                    glob_match(glob, &path)
                }
            })
            .map(String::as_str)
    }
}

/// Which application an image belongs to, and the glob that said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping<'a> {
    pub application: &'a Application,
    pub glob: &'a str,
}

/// The rules, ordered for matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplicationMap {
    rules: Vec<Application>,
}

impl ApplicationMap {
    /// Orders `rules` by priority, keeping the written order among equals.
    pub fn new(mut rules: Vec<Application>) -> Self {
        rules.sort_by_key(|a| a.priority);
        Self { rules }
    }

    pub fn rules(&self) -> &[Application] {
        &self.rules
    }

    /// The first rule that claims the image, or `None` for an unmapped image.
    pub fn map(&self, registry: &str, repository: &str, tags: &[String]) -> Option<Mapping<'_>> {
        self.rules.iter().find_map(|application| {
            application
                .matched(registry, repository, tags)
                .map(|glob| Mapping { application, glob })
        })
    }

    /// The rule named `name`.
    pub fn get(&self, name: &str) -> Option<&Application> {
        self.rules.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, matches: &[&str], priority: u32) -> Application {
        Application {
            name: name.to_owned(),
            service: None,
            team: Some(format!("team-{name}")),
            environment: Some(Environment::Production),
            internet_exposed: None,
            business_criticality: None,
            matches: matches.iter().map(ToString::to_string).collect(),
            priority,
        }
    }

    #[test]
    fn lowest_priority_number_wins_then_written_order() {
        let map = ApplicationMap::new(vec![
            app("catch-all", &["*"], 1000),
            app("payments", &["prod.io/payments/*"], 100),
            app("payments-canary", &["prod.io/payments/*:canary-*"], 10),
            app("shadowed", &["prod.io/payments/*"], 100),
        ]);
        let tags = vec!["1.0".to_owned()];
        let m = map.map("prod.io", "payments/api", &tags).unwrap();
        assert_eq!(
            (m.application.name.as_str(), m.glob),
            ("payments", "prod.io/payments/*")
        );
        let canary = vec!["canary-7".to_owned()];
        assert_eq!(
            map.map("prod.io", "payments/api", &canary)
                .unwrap()
                .application
                .name,
            "payments-canary"
        );
        assert_eq!(
            map.map("dev.io", "x", &[]).unwrap().application.name,
            "catch-all"
        );
    }

    #[test]
    fn an_image_no_rule_claims_is_unmapped() {
        let map = ApplicationMap::new(vec![app("web", &["*/web/*"], 100)]);
        assert!(map.map("r.io", "base/alpine", &[]).is_none());
        // A registry with a port is not mistaken for a tag glob.
        assert!(map.map("r.io:8443", "web/frontend", &[]).is_some());
    }

    #[test]
    fn environments_and_criticalities_parse_their_names_only() {
        assert_eq!(
            "staging".parse::<Environment>().unwrap(),
            Environment::Staging
        );
        assert!(
            matches!("prod".parse::<Environment>(), Err(Error::BadEnvironment(s)) if s == "prod")
        );
        assert_eq!("high".parse::<Criticality>().unwrap(), Criticality::High);
        assert!("urgent".parse::<Criticality>().is_err());
    }
}
