//! Write a Keelson registry connector in Rust.
//!
//! A connector is a WebAssembly component that the Keelson host runs in a sandbox. This crate
//! hides the component bindings: implement [`Connector`] and [`Session`] with plain Rust types,
//! then call [`export_connector!`] once. Everything a connector needs from the outside goes
//! through the host: outbound HTTP ([`http`]) and logging ([`log`](mod@log)).
//!
//! - [`Connector`]: describes the connector and opens sessions from [`Settings`].
//! - [`Session`]: one authenticated connection; the host calls its methods for *Verify
//!   connectivity* and for every stage of a scan.
//! - [`http`]: a small client over the host's `host-http` import, with JSON and form helpers.
//! - [`Secret`]: a sealed credential. Secret settings and captured tokens are handles; a
//!   request names them where their values go and the host writes the values in, only for the
//!   hosts they are bound to.
//! - [`pager`]: opaque cursors, so paging state travels with the host, not in memory, and
//!   [`pager::offset_page`] for listings read whole.
//! - [`skipped`]: rows the connector could not use, counted and reported as a listing that
//!   ends incomplete (never dropped silently).
//! - Short constructors for the records a connector builds most: [`Registry::new`],
//!   [`Repository::new`], [`ImageRef::new`], [`Image::new`], and pages
//!   ([`RegistryPage::new`], [`FindingPage::with_gap`], …).
//! - [`SettingSpec`], [`ConnectorError`] and the other records of the contract
//!   (`keelson:registry@0.2.0`), re-exported as they are generated from the WIT.
//!
//! ```ignore
//! use keelson_plugin_sdk::{Connector, ConnectorError, ConnectorInfo, Session, Settings};
//!
//! struct Example;
//!
//! impl Connector for Example {
//!     type Session = ExampleSession;
//!     fn describe() -> ConnectorInfo { /* id, settings, instructions */ }
//!     fn connect(settings: Settings) -> Result<ExampleSession, ConnectorError> { /* validate */ }
//! }
//!
//! keelson_plugin_sdk::export_connector!(Example);
//! ```
#![deny(missing_docs)]

pub mod http;
pub mod log;
pub mod pager;
mod records;
pub mod secret;
mod settings;
pub mod skipped;

pub use secret::Secret;
pub use settings::Settings;

// The bindings stay private: connector authors see the curated names below, and a new
// wit-bindgen release changes this crate only.
#[allow(
    unsafe_code,
    missing_docs,
    unreachable_pub,
    clippy::pedantic,
    clippy::all
)]
mod wit {
    wit_bindgen::generate!({
        path: "../../wit/v0.2.0",
        world: "registry-connector",
        pub_export_macro: true,
        default_bindings_module: "keelson_plugin_sdk::__private",
        additional_derives: [PartialEq],
        // Records holding a sealed-secret handle cannot be compared.
        additional_derives_ignore: [
            "secret-setting", "part", "sealed-header", "form-field", "basic-credentials",
            "authorization", "body", "request", "captured", "response",
        ],
    });
}

pub use wit::keelson::registry::types::{
    Account, ConnectorError, ConnectorInfo, Exploitability, Finding, FindingPage, FixStatus, Gap,
    Image, ImageContext, ImagePage, ImageRef, PackageInfo, PageRequest, Platform, Reference,
    Registry, RegistryPage, Repository, RepositoryPage, ScanScope, Setting, SettingSpec, Severity,
};

/// A connector: what it is and how it opens a session.
///
/// The type itself holds no state; the host may load the component many times. State lives in
/// the [`Session`] it returns.
pub trait Connector: 'static {
    /// The session type `connect` returns.
    type Session: Session;

    /// Describes the connector: id, settings, connection instructions. Called when the host
    /// loads the plugin and whenever it shows the connect form; must not use the network.
    fn describe() -> ConnectorInfo;

    /// Checks every setting and opens a session. Called for *Verify connectivity* and at the
    /// start of every scan. Return [`ConnectorError::InvalidConfig`] naming the key of a missing
    /// or malformed value. May sign in, though signing in lazily keeps this call cheap.
    fn connect(settings: Settings) -> Result<Self::Session, ConnectorError>;
}

/// One authenticated connection to an account.
///
/// Methods take `&self`: keep caches (tokens, listings) in `RefCell`/`Cell` fields. The host
/// calls one method at a time and drives paging: it passes back the `next` cursor of a page
/// until a page comes without one. Keep paging state in the cursor (see [`pager`]), so a
/// page can be asked for again.
pub trait Session: 'static {
    /// Proves the session can do what a scan needs (sign in, read the account, list
    /// registries, read findings) without scanning. Called for *Verify connectivity*.
    fn verify(&self) -> Result<Account, ConnectorError>;

    /// Returns one page of the registries the session can see. Called first in a scan.
    fn list_registries(&self, page: PageRequest) -> Result<RegistryPage, ConnectorError>;

    /// Returns one page of the repositories of `registry` (a login server returned by
    /// [`Session::list_registries`]). Called for each registry the connection covers.
    fn list_repositories(
        &self,
        registry: &str,
        page: PageRequest,
    ) -> Result<RepositoryPage, ConnectorError>;

    /// Returns one page of the images of `repository` in `registry`. Called for each
    /// repository the connection covers.
    fn list_images(
        &self,
        registry: &str,
        repository: &str,
        page: PageRequest,
    ) -> Result<ImagePage, ConnectorError>;

    /// Returns one page of open findings for `scope`. Called after enumeration. Return an error
    /// rather than a short page when part of the data could not be read: a short page would
    /// resolve findings. The default reports none.
    fn list_findings(
        &self,
        scope: &ScanScope,
        page: PageRequest,
    ) -> Result<FindingPage, ConnectorError> {
        let _ = (scope, page);
        Ok(FindingPage::new(Vec::new(), None))
    }

    /// Describes a batch of images (tags, push times, exposure). Called after scanning, with
    /// the images that have findings. Images the source does not know may be left out. The
    /// default knows none.
    fn describe_images(&self, images: &[ImageRef]) -> Result<Vec<ImageContext>, ConnectorError> {
        let _ = images;
        Ok(Vec::new())
    }
}

impl ConnectorError {
    /// The operator message, or `None` for [`ConnectorError::Throttled`].
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::InvalidCredentials(m)
            | Self::PermissionDenied(m)
            | Self::NotFound(m)
            | Self::Unavailable(m)
            | Self::InvalidConfig(m)
            | Self::Other(m) => Some(m),
            Self::Throttled(_) => None,
        }
    }

    /// The case's name as in the WIT (`invalid-credentials`), for logs and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidCredentials(_) => "invalid-credentials",
            Self::PermissionDenied(_) => "permission-denied",
            Self::NotFound(_) => "not-found",
            Self::Throttled(_) => "throttled",
            Self::Unavailable(_) => "unavailable",
            Self::InvalidConfig(_) => "invalid-config",
            Self::Other(_) => "other",
        }
    }

    /// Applies `f` to the message, keeping the case (used to scrub or prefix messages).
    #[must_use]
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::InvalidCredentials(m) => Self::InvalidCredentials(f(m)),
            Self::PermissionDenied(m) => Self::PermissionDenied(f(m)),
            Self::NotFound(m) => Self::NotFound(f(m)),
            Self::Unavailable(m) => Self::Unavailable(f(m)),
            Self::InvalidConfig(m) => Self::InvalidConfig(f(m)),
            Self::Other(m) => Self::Other(f(m)),
            Self::Throttled(ms) => Self::Throttled(ms),
        }
    }
}

impl SettingSpec {
    /// A required, non-secret text setting without default or choices.
    pub fn new(key: &str, label: &str, help: &str) -> Self {
        Self {
            key: key.to_owned(),
            label: label.to_owned(),
            help: help.to_owned(),
            secret: false,
            required: true,
            default_value: None,
            choices: Vec::new(),
            only_when: None,
            secret_hosts: Vec::new(),
        }
    }

    /// Marks the setting secret: stored encrypted, never logged or shown again, and given to
    /// `connect` sealed ([`Settings::secret`]).
    #[must_use]
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// The host patterns a secret's value may be sent to (they must lie inside the plugin's
    /// `allowed_hosts`; the operator may narrow them). Left empty: the plugin's exact-host
    /// grants.
    #[must_use]
    pub fn secret_hosts(mut self, hosts: &[&str]) -> Self {
        self.secret_hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        self
    }

    /// Marks the setting optional.
    #[must_use]
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// Sets the value used when the operator gives none (which makes the setting optional).
    #[must_use]
    pub fn default_value(mut self, value: &str) -> Self {
        self.default_value = Some(value.to_owned());
        self.required = false;
        self
    }

    /// Restricts the value to `choices`.
    #[must_use]
    pub fn choices(mut self, choices: &[&str]) -> Self {
        self.choices = choices.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// Applies the setting only when setting `key` has `value`.
    #[must_use]
    pub fn only_when(mut self, key: &str, value: &str) -> Self {
        self.only_when = Some(Setting {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        self
    }
}

macro_rules! page_constructors {
    ($($page:ident of $item:ident),*) => {$(
        impl $page {
            /// A page of `items` with the cursor of the next one and no gaps.
            pub fn new(items: Vec<$item>, next: Option<String>) -> Self {
                Self { items, next, gaps: Vec::new() }
            }

            /// Adds a part of the scope this page could not read (the listing goes on, and
            /// ends incomplete).
            #[must_use]
            pub fn with_gap(mut self, gap: Gap) -> Self {
                self.gaps.push(gap);
                self
            }
        }
    )*};
}

page_constructors!(
    RegistryPage of Registry,
    RepositoryPage of Repository,
    ImagePage of Image,
    FindingPage of Finding
);

impl Severity {
    /// Reads a scanner's severity word, ignoring case (`High`, `CRITICAL`, `moderate`);
    /// anything unrecognised is [`Severity::Unknown`].
    pub fn parse_lenient(word: &str) -> Self {
        match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Self::Critical,
            "high" | "important" => Self::High,
            "medium" | "moderate" => Self::Medium,
            "low" => Self::Low,
            "informational" | "information" | "info" | "none" | "negligible" => Self::Informational,
            _ => Self::Unknown,
        }
    }
}

impl FixStatus {
    /// Reads a fix status (`FixAvailable`, `no_fix_available`, `Won't fix`), ignoring case and
    /// separators; anything unrecognised is [`FixStatus::Unknown`].
    pub fn parse_lenient(word: &str) -> Self {
        let squashed: String = word
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match squashed.as_str() {
            "fixavailable" | "fixed" | "available" => Self::FixAvailable,
            "nofixavailable" | "nofix" | "notfixed" => Self::NoFixAvailable,
            "scheduled" | "fixscheduled" => Self::Scheduled,
            "wontfix" | "willnotfix" => Self::WontFix,
            _ => Self::Unknown,
        }
    }
}

/// Implements the component's exports for a [`Connector`].
///
/// Invoke it once, at the top level of the connector crate (a `cdylib`):
///
/// ```ignore
/// keelson_plugin_sdk::export_connector!(MyConnector);
/// ```
///
/// It also installs a panic hook that logs the panic message through the host before the
/// component aborts.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        #[doc(hidden)]
        type __KeelsonConnectorExport = $crate::__private::Exporter<$connector>;
        #[doc(hidden)]
        #[allow(unsafe_code)]
        mod __keelson_connector_export {
            use super::__KeelsonConnectorExport;
            $crate::__private::export!(__KeelsonConnectorExport with_types_in $crate::__private);
        }
    };
}

/// Glue for [`export_connector!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::marker::PhantomData;

    use crate::wit::exports::keelson::registry::{auth, enrichment, enumeration, scanning};
    use crate::wit::keelson::registry::secrets::SecretSetting;
    pub use crate::wit::{export, exports};
    use crate::{
        Account, Connector, ConnectorError, ConnectorInfo, FindingPage, ImageContext, ImagePage,
        ImageRef, PageRequest, RegistryPage, RepositoryPage, ScanScope, Session, Setting, Settings,
    };

    /// Stands for the exported component; one per connector type.
    pub struct Exporter<C>(PhantomData<C>);

    /// The `session` resource's representation: the connector's own session.
    pub struct SessionCell<S>(S);

    /// The connector's session behind a borrowed handle. Every entry point passes here or
    /// through `describe`/`connect`, so the panic hook is in place before connector code runs.
    fn session<C: Connector>(borrow: auth::SessionBorrow<'_>) -> &C::Session {
        crate::log::install_panic_hook();
        &borrow.get::<SessionCell<C::Session>>().0
    }

    impl<S: Session> auth::GuestSession for SessionCell<S> {
        fn verify(&self) -> Result<Account, ConnectorError> {
            crate::log::install_panic_hook();
            self.0.verify()
        }
    }

    impl<C: Connector> auth::Guest for Exporter<C> {
        type Session = SessionCell<C::Session>;

        fn describe() -> ConnectorInfo {
            crate::log::install_panic_hook();
            C::describe()
        }

        fn connect(
            settings: Vec<Setting>,
            secrets: Vec<SecretSetting>,
        ) -> Result<auth::Session, ConnectorError> {
            crate::log::install_panic_hook();
            let secrets = secrets
                .into_iter()
                .map(|s| (s.key, crate::Secret::sealed(s.value)))
                .collect();
            let session = C::connect(Settings::new(settings, secrets))?;
            Ok(auth::Session::new(SessionCell(session)))
        }
    }

    impl<C: Connector> enumeration::Guest for Exporter<C> {
        fn list_registries(
            session: auth::SessionBorrow<'_>,
            page: PageRequest,
        ) -> Result<RegistryPage, ConnectorError> {
            self::session::<C>(session).list_registries(page)
        }

        fn list_repositories(
            session: auth::SessionBorrow<'_>,
            registry: String,
            page: PageRequest,
        ) -> Result<RepositoryPage, ConnectorError> {
            self::session::<C>(session).list_repositories(&registry, page)
        }

        fn list_images(
            session: auth::SessionBorrow<'_>,
            registry: String,
            repository: String,
            page: PageRequest,
        ) -> Result<ImagePage, ConnectorError> {
            self::session::<C>(session).list_images(&registry, &repository, page)
        }
    }

    impl<C: Connector> scanning::Guest for Exporter<C> {
        fn list_findings(
            session: auth::SessionBorrow<'_>,
            scope: ScanScope,
            page: PageRequest,
        ) -> Result<FindingPage, ConnectorError> {
            self::session::<C>(session).list_findings(&scope, page)
        }
    }

    impl<C: Connector> enrichment::Guest for Exporter<C> {
        fn describe_images(
            session: auth::SessionBorrow<'_>,
            images: Vec<ImageRef>,
        ) -> Result<Vec<ImageContext>, ConnectorError> {
            self::session::<C>(session).describe_images(&images)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_spec_builder_sets_flags() {
        let spec = SettingSpec::new("cloud", "Cloud", "Which Azure cloud.")
            .default_value("public")
            .choices(&["public", "custom"]);
        assert!(!spec.required);
        assert_eq!(spec.default_value.as_deref(), Some("public"));
        assert_eq!(spec.choices, vec!["public".to_owned(), "custom".to_owned()]);

        let secret = SettingSpec::new("client_secret", "Client secret", "The value.")
            .secret()
            .only_when("cloud", "custom");
        assert!(secret.secret && secret.required);
        assert_eq!(
            secret.only_when,
            Some(Setting {
                key: "cloud".into(),
                value: "custom".into()
            })
        );
    }

    #[test]
    fn severity_parse_ignores_case_and_maps_synonyms() {
        assert_eq!(Severity::parse_lenient("CRITICAL"), Severity::Critical);
        assert_eq!(Severity::parse_lenient(" high "), Severity::High);
        assert_eq!(Severity::parse_lenient("Moderate"), Severity::Medium);
        assert_eq!(Severity::parse_lenient("low"), Severity::Low);
        assert_eq!(Severity::parse_lenient("Info"), Severity::Informational);
        assert_eq!(Severity::parse_lenient("Unknown"), Severity::Unknown);
        assert_eq!(Severity::parse_lenient(""), Severity::Unknown);
    }

    #[test]
    fn fix_status_parse_ignores_case_and_separators() {
        assert_eq!(
            FixStatus::parse_lenient("FixAvailable"),
            FixStatus::FixAvailable
        );
        assert_eq!(
            FixStatus::parse_lenient("no_fix_available"),
            FixStatus::NoFixAvailable
        );
        assert_eq!(FixStatus::parse_lenient("Won't fix"), FixStatus::WontFix);
        assert_eq!(FixStatus::parse_lenient("Scheduled"), FixStatus::Scheduled);
        assert_eq!(FixStatus::parse_lenient("whatever"), FixStatus::Unknown);
    }

    #[test]
    fn connector_error_map_message_keeps_the_case() {
        let err = ConnectorError::PermissionDenied("no access".into())
            .map_message(|m| format!("registry `a`: {m}"));
        assert_eq!(err.kind(), "permission-denied");
        assert_eq!(err.message(), Some("registry `a`: no access"));
        assert_eq!(
            ConnectorError::Throttled(5).map_message(|m| m + "x"),
            ConnectorError::Throttled(5)
        );
    }
}
