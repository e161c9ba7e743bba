//! `[[application]]`, `[enrichment]` and `[[compliance]]`: ownership rules, thresholds and
//! compliance rows, checked into the types of `keelson-enrich`.

use std::collections::BTreeMap;

use keelson_core::Severity;
use keelson_enrich::{Application, ControlRule, Criticality, Environment, Thresholds, check_glob};
use toml::Spanned;

use super::Source;
use crate::error::{Error, Problem};
use crate::wire::{ApplicationWire, ComplianceWire, EnrichmentWire};

fn application_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn environment(src: &Source<'_>, v: &Spanned<String>) -> Result<Environment, Error> {
    v.get_ref()
        .parse()
        .map_err(|_| src.err(&v.span(), Problem::BadEnvironment(v.get_ref().clone())))
}

fn non_blank(src: &Source<'_>, v: &Spanned<String>, key: &'static str) -> Result<String, Error> {
    if v.get_ref().trim().is_empty() {
        return Err(src.err(
            &v.span(),
            Problem::Empty {
                key,
                expected: "a non-empty text",
            },
        ));
    }
    Ok(v.get_ref().clone())
}

pub(super) fn applications(
    wire: Vec<ApplicationWire>,
    src: &Source<'_>,
) -> Result<Vec<Application>, Error> {
    let mut out = Vec::with_capacity(wire.len());
    let mut first_lines: BTreeMap<String, usize> = BTreeMap::new();
    for entry in wire {
        let name_span = entry.name.span();
        let name = entry.name.into_inner();
        if !application_name_ok(&name) {
            return Err(src.err(&name_span, Problem::BadApplicationName(name)));
        }
        if let Some(first_line) = first_lines.get(&name) {
            let first_line = *first_line;
            return Err(src.err(
                &name_span,
                Problem::DuplicateApplication { name, first_line },
            ));
        }
        first_lines.insert(name.clone(), src.line(&name_span));
        let matches_span = entry.matches.span();
        let globs = entry.matches.into_inner();
        if globs.is_empty() {
            return Err(src.err(
                &matches_span,
                Problem::Empty {
                    key: "match",
                    expected: "at least one `registry/repository[:tag]` glob",
                },
            ));
        }
        let mut matches = Vec::with_capacity(globs.len());
        for glob in globs {
            if !check_glob(glob.get_ref()) {
                return Err(src.err(&glob.span(), Problem::BadImageGlob(glob.get_ref().clone())));
            }
            matches.push(glob.into_inner());
        }
        let optional = |v: &Option<Spanned<String>>, key| {
            v.as_ref().map(|v| non_blank(src, v, key)).transpose()
        };
        let business_criticality = entry
            .business_criticality
            .as_ref()
            .map(|v| {
                v.get_ref()
                    .parse::<Criticality>()
                    .map_err(|_| src.err(&v.span(), Problem::BadCriticality(v.get_ref().clone())))
            })
            .transpose()?;
        let priority = match &entry.priority {
            Some(v) if *v.get_ref() <= 1_000_000 => *v.get_ref() as u32,
            Some(v) => {
                return Err(src.err(
                    &v.span(),
                    Problem::LimitOutOfRange {
                        key: "priority",
                        value: *v.get_ref(),
                        min: 0,
                        max: 1_000_000,
                        unit: "",
                    },
                ));
            }
            None => Application::DEFAULT_PRIORITY,
        };
        out.push(Application {
            service: optional(&entry.service, "service")?,
            team: optional(&entry.team, "team")?,
            environment: entry
                .environment
                .as_ref()
                .map(|v| environment(src, v))
                .transpose()?,
            internet_exposed: entry.internet_exposed,
            business_criticality,
            matches,
            priority,
            name,
        });
    }
    Ok(out)
}

pub(super) fn thresholds(
    wire: Option<EnrichmentWire>,
    src: &Source<'_>,
) -> Result<Thresholds, Error> {
    let mut out = Thresholds::default();
    let Some(wire) = wire else {
        return Ok(out);
    };
    let probability = |v: &Option<Spanned<f64>>, key: &'static str| match v {
        Some(v) if (0.0..=1.0).contains(v.get_ref()) => Ok(Some(*v.get_ref())),
        Some(v) => Err(src.err(
            &v.span(),
            Problem::NotAProbability {
                key,
                value: v.get_ref().to_string(),
            },
        )),
        None => Ok(None),
    };
    let days = |v: &Option<Spanned<u64>>, key: &'static str| match v {
        Some(v) if (1..=3650).contains(v.get_ref()) => Ok(Some(*v.get_ref() as u32)),
        Some(v) => Err(src.err(
            &v.span(),
            Problem::LimitOutOfRange {
                key,
                value: *v.get_ref(),
                min: 1,
                max: 3650,
                unit: " days",
            },
        )),
        None => Ok(None),
    };
    if let Some(high) = probability(&wire.epss_high, "epss_high")? {
        out.epss_high = high;
    }
    if let Some(low) = probability(&wire.epss_low, "epss_low")? {
        out.epss_low = low;
    }
    if out.epss_low >= out.epss_high {
        let span = wire
            .epss_low
            .as_ref()
            .or(wire.epss_high.as_ref())
            .map(Spanned::span)
            .unwrap_or_default();
        return Err(src.err(
            &span,
            Problem::EpssThresholdsCrossed {
                low: out.epss_low.to_string(),
                high: out.epss_high.to_string(),
            },
        ));
    }
    if let Some(d) = days(&wire.not_in_use_days, "not_in_use_days")? {
        out.not_in_use_days = d;
    }
    let sla = &mut out.sla_days;
    for (value, key, slot) in [
        (
            &wire.sla_critical_days,
            "sla_critical_days",
            &mut sla.critical,
        ),
        (&wire.sla_high_days, "sla_high_days", &mut sla.high),
        (&wire.sla_medium_days, "sla_medium_days", &mut sla.medium),
        (&wire.sla_low_days, "sla_low_days", &mut sla.low),
    ] {
        if let Some(d) = days(value, key)? {
            *slot = d;
        }
    }
    if let Some(restart) = wire.sla_restart_on_reopen {
        out.sla_restart_on_reopen = restart;
    }
    Ok(out)
}

pub(super) fn compliance(
    wire: Vec<ComplianceWire>,
    src: &Source<'_>,
) -> Result<Vec<ControlRule>, Error> {
    let mut out = Vec::with_capacity(wire.len());
    for entry in wire {
        let framework = non_blank(src, &entry.framework, "framework")?;
        let control = non_blank(src, &entry.control, "control")?;
        if control.contains(char::is_whitespace) {
            return Err(src.err(
                &entry.control.span(),
                Problem::Empty {
                    key: "control",
                    expected: "a control id without spaces (e.g. `CC7.1`)",
                },
            ));
        }
        let min_priority = entry
            .min_priority
            .as_ref()
            .map(|v| {
                v.get_ref()
                    .parse::<Severity>()
                    .ok()
                    .filter(|s| *s != Severity::Unknown)
                    .ok_or_else(|| src.err(&v.span(), Problem::BadPriority(v.get_ref().clone())))
            })
            .transpose()?;
        let mut applications = Vec::with_capacity(entry.applications.len());
        for glob in &entry.applications {
            if !check_glob(glob.get_ref()) {
                return Err(src.err(&glob.span(), Problem::BadImageGlob(glob.get_ref().clone())));
            }
            applications.push(glob.get_ref().clone());
        }
        let environments = entry
            .environments
            .iter()
            .map(|v| environment(src, v))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(ControlRule {
            title: entry
                .title
                .as_ref()
                .map(|t| t.get_ref().clone())
                .unwrap_or_default(),
            framework,
            control,
            min_priority,
            fix_available: entry.fix_available,
            known_exploited: entry.known_exploited,
            applications,
            environments,
        });
    }
    Ok(out)
}
