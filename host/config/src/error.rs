//! Errors of reading `plugins.toml` and of resolving `file:` secrets.
//!
//! [`Error`] is what callers get; its `Display` is the whole message an operator reads, e.g.
//! ``plugins.toml:12:17: unknown field `alowed_hosts`, expected one of `id`, `path`, …``.
//! [`Problem`] is the part after the position: one variant per kind of mistake, each carrying
//! the offending value (never a secret value) and saying what was expected.

use std::fmt;
use std::path::PathBuf;

use keelson_core::HostPatternError;

/// A failure of [`load`](crate::load), [`parse`](crate::parse) or
/// [`resolve_secret_file`](crate::resolve_secret_file).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read at all.
    #[error("{}: cannot read the file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but something in it is wrong.
    #[error("{location}: {problem}")]
    Invalid {
        location: Location,
        problem: Problem,
    },
    /// The secrets folder does not exist or cannot be resolved.
    #[error("secrets folder `{}` cannot be read: {source}", path.display())]
    SecretsDirUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `file:` secret does not exist or cannot be resolved.
    #[error("secret file `{}` cannot be read: {source}", path.display())]
    SecretFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `file:` secret resolves (through a symlink or `..`) to a place outside the secrets folder.
    #[error(
        "secret file `{}` resolves to `{}`, outside the secrets folder `{}`; expected a file inside it",
        path.display(),
        resolved.display(),
        secrets_dir.display()
    )]
    SecretFileOutside {
        path: PathBuf,
        resolved: PathBuf,
        secrets_dir: PathBuf,
    },
}

impl Error {
    /// What is wrong, when the error is about the file's content.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Invalid { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// Where the error is, when the error is about the file's content.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Invalid { location, .. } => Some(location),
            _ => None,
        }
    }
}

/// A place in the file: `file:line:col` (1-based; the column counts characters). The position
/// is absent only when the TOML reader could not say where the mistake is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as the caller named it.
    pub file: PathBuf,
    /// `(line, column)`, both starting at 1.
    pub position: Option<(usize, usize)>,
}

impl Location {
    /// The location of byte `offset` of `text`.
    pub(crate) fn at(file: PathBuf, text: &str, offset: Option<usize>) -> Self {
        let position = offset.map(|offset| {
            let offset = floor_char_boundary(text, offset.min(text.len()));
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[line_start..].chars().count() + 1;
            (line, column)
        });
        Self { file, position }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        Ok(())
    }
}

/// What is wrong with a value of `plugins.toml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A syntax error, unknown key, missing key or wrong type, as the TOML reader words it.
    #[error("{0}")]
    Toml(String),
    #[error(
        "`{0}` is not a valid plugin id; expected lowercase ASCII letters, digits and single dashes, starting with a letter, at most 64 characters (e.g. `azure-container-registry`)"
    )]
    BadPluginId(String),
    #[error(
        "duplicate plugin id `{id}` (first defined on line {first_line}); expected each `[[plugin]]` id once"
    )]
    DuplicatePluginId { id: String, first_line: usize },
    #[error(
        "`{0}` is not a valid connection name; expected lowercase ASCII letters, digits, `-` and `_`, starting with a letter or digit, at most 64 characters (e.g. `prod`)"
    )]
    BadConnectionName(String),
    #[error(
        "duplicate connection name `{name}` (first defined on line {first_line}); expected each `[[connection]]` name once"
    )]
    DuplicateConnection { name: String, first_line: usize },
    #[error(
        "connection uses plugin `{plugin}`, which is not defined; expected {}",
        one_of(known)
    )]
    UnknownPlugin { plugin: String, known: Vec<String> },
    #[error("bad entry in `allowed_hosts`: {0}")]
    BadHostPattern(HostPatternError),
    #[error(
        "secret `{key}` is bound to `{pattern}`, which is not inside this plugin's `allowed_hosts`; `secret_hosts` can only narrow the grant: add the host to `allowed_hosts` or bind the secret to a granted one"
    )]
    SecretHostNotGranted { key: String, pattern: String },
    #[error("`{0}` is not a SHA-256 digest; expected 64 hexadecimal characters")]
    BadSha256(String),
    #[error(
        "`{0}` is not a name that can be pinned; expected a DNS name such as `management.azure.com` or a wildcard such as `*.azurecr.io`"
    )]
    BadResolveName(String),
    #[error("duplicate pin for `{0}` (names are compared in lowercase); expected each name once")]
    DuplicateResolveName(String),
    #[error(
        "`{addr}` (pinned for `{name}`) is not an IP address; expected an IPv4 or IPv6 address such as `10.1.2.3` or `fd00::1`"
    )]
    BadResolveAddr { name: String, addr: String },
    #[error("`{0}` is pinned to no address; expected an address or a non-empty list of addresses")]
    EmptyResolve(String),
    #[error(
        "`{0}` is not a schedule; expected `every <n>m`, `every <n>h` or `every <n>d` with n from 1 and at most 365 days in all (e.g. `every 6h`)"
    )]
    BadSchedule(String),
    #[error("`{key}` is `{value}`; expected {min} to {max}{unit}")]
    LimitOutOfRange {
        key: &'static str,
        value: u64,
        min: u64,
        max: u64,
        unit: &'static str,
    },
    #[error(
        "secret `{0}` is not a string (its value is not shown: it may be a secret); a secret reference is `env:NAME`, `file:PATH` or `prompt`"
    )]
    SecretNotAString(String),
    #[error(
        "secret `{0}` is not a reference; a secret reference is `env:NAME`, `file:PATH` or `prompt`"
    )]
    PlainSecret(String),
    #[error(
        "secret `{key}` reads `env:{name}`, which is not a `KEELSON_` variable; expected `env:KEELSON_<NAME>` with uppercase letters, digits and `_`"
    )]
    EnvOutsidePrefix { key: String, name: String },
    #[error(
        "secret `{key}` reads `file:{}`, outside the secrets folder; expected `file:` with a path inside `secrets_dir` (relative paths are read from it) that does not escape it with `..`",
        path.display()
    )]
    FileOutsideSecretsDir { key: String, path: PathBuf },
    #[error(
        "secret `{key}` reads `{reference}`, where Keelson's master key comes from (it seals every stored secret), and a connector is never given it; expected the connection's own credential, e.g. `env:KEELSON_<NAME>`"
    )]
    SecretIsMasterKey { key: String, reference: String },
    #[error("`{0}` is in both `settings` and `secrets`; expected each key in one of them")]
    KeyInBothTables(String),
    #[error("`{key}` is empty; expected {expected}")]
    Empty {
        key: &'static str,
        expected: &'static str,
    },
    #[error(
        "`{0}` is not a location; expected a registry or repository glob without spaces, or `*` for everything"
    )]
    BadLocation(String),
    #[error(
        "`{value}` is not a usable proxy: {reason}; expected `http://host:port` or `https://host:port`"
    )]
    BadProxy { value: String, reason: &'static str },
    #[error(
        "`{0}` is not a valid application name; expected letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 64 characters (e.g. `payments`)"
    )]
    BadApplicationName(String),
    #[error(
        "duplicate application name `{name}` (first defined on line {first_line}); expected each `[[application]]` name once"
    )]
    DuplicateApplication { name: String, first_line: usize },
    #[error(
        "`{0}` is not an image glob; expected `registry/repository` or `registry/repository:tag` with `*` and `?` wildcards and no spaces (e.g. `contosoprod*/payments/*`)"
    )]
    BadImageGlob(String),
    #[error("`{0}` is not an environment; expected production, staging, test or development")]
    BadEnvironment(String),
    #[error("`{0}` is not a business criticality; expected low, medium, high or critical")]
    BadCriticality(String),
    #[error("`{0}` is not a priority; expected critical, high, medium, low or informational")]
    BadPriority(String),
    #[error("`{key}` is `{value}`; expected a probability from 0 to 1 (e.g. `0.1`)")]
    NotAProbability { key: &'static str, value: String },
    #[error(
        "`epss_low` ({low}) is not below `epss_high` ({high}); expected a low threshold under the high one"
    )]
    EpssThresholdsCrossed { low: String, high: String },
}

fn one_of(known: &[String]) -> String {
    match known {
        [] => "a `[[plugin]]` with that id, and none is defined".to_owned(),
        [one] => format!("`{one}`"),
        many => {
            let quoted: Vec<String> = many.iter().map(|k| format!("`{k}`")).collect();
            format!("one of {}", quoted.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(text: &str, offset: usize) -> Option<(usize, usize)> {
        Location::at(PathBuf::from("f.toml"), text, Some(offset)).position
    }

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(position(text, 0), Some((1, 1)));
        assert_eq!(position(text, 4), Some((1, 5)));
        assert_eq!(position(text, 6), Some((2, 1)));
        // `é` is two bytes but one column: the `=` after it is byte 10, column 4.
        assert_eq!(position(text, 10), Some((2, 4)));
        // Past the end, and inside a multi-byte character, still land somewhere sensible.
        assert_eq!(position(text, 1000), Some((3, 1)));
        assert_eq!(position(text, 8), Some((2, 2)));
    }

    #[test]
    fn location_without_position_prints_the_file_only() {
        let location = Location {
            file: PathBuf::from("plugins.toml"),
            position: None,
        };
        assert_eq!(location.to_string(), "plugins.toml");
        let location = Location {
            file: PathBuf::from("plugins.toml"),
            position: Some((12, 17)),
        };
        assert_eq!(location.to_string(), "plugins.toml:12:17");
    }

    #[test]
    fn unknown_plugin_lists_what_is_known() {
        let problem = |known: &[&str]| {
            Problem::UnknownPlugin {
                plugin: "x".to_owned(),
                known: known.iter().map(ToString::to_string).collect(),
            }
            .to_string()
        };
        assert!(problem(&[]).ends_with("and none is defined"));
        assert!(problem(&["a"]).ends_with("expected `a`"));
        assert!(problem(&["a", "b"]).ends_with("expected one of `a`, `b`"));
    }
}
