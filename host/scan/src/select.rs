//! Location selection: which registries and repositories of a connection are scanned.
//!
//! A rule is `select` or `deselect` with a glob (`*` any run of characters, `/` included; `?` one
//! character; ASCII case ignored). A glob without `/` matches a registry (its name as the
//! connector reports it, for ACR the login server); a glob with `/` matches `registry/repository`.
//! Rules apply in order and the last one that matches decides. A location no rule matches is
//! selected when no rule selects anything (so deselect-only rules carve out of "everything"), and
//! not selected otherwise (so `--select 'prod*'` narrows to `prod*`).

use keelson_store::{SelectionAction, SelectionRule};

/// A compiled, checked set of selection rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    rules: Vec<Rule>,
    default_selected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    select: bool,
    /// The whole glob.
    glob: String,
    /// Whether the glob names repositories (contains `/`).
    repository: bool,
}

impl Selection {
    /// Everything selected.
    pub fn all() -> Self {
        Self {
            rules: Vec::new(),
            default_selected: true,
        }
    }

    /// Compiles `rules` (in order). Refuses an empty or whitespace-padded glob.
    pub fn new(rules: &[SelectionRule]) -> Result<Self, crate::Error> {
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            check_glob(&rule.pattern)?;
            compiled.push(Rule {
                select: rule.action == SelectionAction::Select,
                glob: rule.pattern.clone(),
                repository: rule.pattern.contains('/'),
            });
        }
        let default_selected = !compiled.iter().any(|r| r.select);
        Ok(Self {
            rules: compiled,
            default_selected,
        })
    }

    /// Whether everything is selected (no rules at all).
    pub fn is_everything(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether the run should read `registry` at all: selected as a registry, or holding a
    /// repository that a repository rule selects.
    pub fn registry_in_scope(&self, registry: &str) -> bool {
        if self.registry_selected(registry) {
            return true;
        }
        self.rules.iter().any(|r| {
            r.select
                && r.repository
                && r.glob
                    .split_once('/')
                    .is_some_and(|(registry_part, _)| glob_match(registry_part, registry))
        })
    }

    /// The decision of the registry rules alone for `registry`.
    fn registry_selected(&self, registry: &str) -> bool {
        self.rules
            .iter()
            .rev()
            .find(|r| !r.repository && glob_match(&r.glob, registry))
            .map_or(self.default_selected, |r| r.select)
    }

    /// Whether `repository` of `registry` is scanned and monitored.
    pub fn repository_selected(&self, registry: &str, repository: &str) -> bool {
        let path = format!("{registry}/{repository}");
        self.rules
            .iter()
            .rev()
            .find(|r| {
                if r.repository {
                    glob_match(&r.glob, &path)
                } else {
                    glob_match(&r.glob, registry)
                }
            })
            .map_or(self.default_selected, |r| r.select)
    }
}

/// Checks a glob as typed by an operator.
pub fn check_glob(glob: &str) -> Result<(), crate::Error> {
    if glob.is_empty() || glob.trim() != glob || glob.chars().any(char::is_control) {
        return Err(crate::Error::InvalidGlob(glob.to_owned()));
    }
    Ok(())
}

/// Matches `text` against `glob` (`*`, `?`, ASCII case ignored) in linear space, backtracking
/// only to the last `*`.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let glob: Vec<char> = glob.chars().map(|c| c.to_ascii_lowercase()).collect();
    let text: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    let (mut g, mut t) = (0, 0);
    // Position of the last `*` in the glob and of the text it was tried against.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    g = sg + 1;
                    t = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: SelectionAction, pattern: &str) -> SelectionRule {
        SelectionRule {
            action,
            pattern: pattern.to_owned(),
        }
    }
    use SelectionAction::{Deselect, Select};

    #[test]
    fn globs_match_stars_question_marks_and_ignore_case() {
        assert!(glob_match("*", ""));
        assert!(glob_match("contoso*", "ContosoProd.azurecr.io"));
        assert!(glob_match(
            "*.azurecr.io/payments/*",
            "a.azurecr.io/payments/api"
        ));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*a*b*c", "xxaxxbxxc"));
        assert!(!glob_match("*a*b*c", "xxaxxbxx"));
        assert!(!glob_match("prod", "prod2"));
        assert!(glob_match("**", "anything/at/all"));
    }

    #[test]
    fn no_rules_selects_everything() {
        let s = Selection::new(&[]).unwrap();
        assert!(s.is_everything());
        assert!(s.registry_in_scope("r.azurecr.io"));
        assert!(s.repository_selected("r.azurecr.io", "x/y"));
        assert_eq!(s, Selection::all());
    }

    #[test]
    fn a_select_narrows_and_a_later_deselect_carves_out() {
        let s = Selection::new(&[rule(Select, "prod*"), rule(Deselect, "prod*/base/*")]).unwrap();
        assert!(s.registry_in_scope("prod.azurecr.io"));
        assert!(!s.registry_in_scope("dev.azurecr.io"));
        assert!(s.repository_selected("prod.azurecr.io", "payments/api"));
        assert!(!s.repository_selected("prod.azurecr.io", "base/alpine"));
        assert!(!s.repository_selected("dev.azurecr.io", "payments/api"));
    }

    #[test]
    fn deselect_only_keeps_the_rest() {
        let s = Selection::new(&[rule(Deselect, "dev*")]).unwrap();
        assert!(!s.registry_in_scope("dev.azurecr.io"));
        assert!(s.registry_in_scope("prod.azurecr.io"));
        assert!(!s.repository_selected("dev.azurecr.io", "a"));
    }

    #[test]
    fn a_repository_select_brings_its_registry_into_scope_only() {
        let s = Selection::new(&[rule(Select, "prod*/payments/*")]).unwrap();
        assert!(s.registry_in_scope("prod.azurecr.io"));
        assert!(!s.registry_in_scope("dev.azurecr.io"));
        assert!(s.repository_selected("prod.azurecr.io", "payments/api"));
        assert!(!s.repository_selected("prod.azurecr.io", "web/frontend"));
    }

    #[test]
    fn the_last_matching_rule_wins() {
        let s = Selection::new(&[rule(Deselect, "*"), rule(Select, "prod*")]).unwrap();
        assert!(s.registry_in_scope("prod.azurecr.io"));
        assert!(!s.registry_in_scope("dev.azurecr.io"));
        let s = Selection::new(&[rule(Select, "prod*"), rule(Deselect, "*")]).unwrap();
        assert!(!s.registry_in_scope("prod.azurecr.io"));
    }

    #[test]
    fn bad_globs_are_refused_naming_the_glob() {
        for bad in ["", " prod", "a\tb"] {
            let err = Selection::new(&[rule(Select, bad)]).unwrap_err();
            assert!(
                matches!(&err, crate::Error::InvalidGlob(g) if g == bad),
                "{err}"
            );
        }
    }
}
