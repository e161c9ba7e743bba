//! Logging through the host's `log` import.
//!
//! The host tags each line with the plugin and the connection. Never log a secret, a token or a
//! URL with credentials in it. The macros ([`info!`](crate::info) and friends) format like
//! `format!`; the functions take a finished message.
//!
//! Outside WebAssembly (unit tests on the build machine) lines are kept in memory instead, and
//! [`take_captured`] returns them, so tests can check what a connector logs.

use std::sync::Once;

pub use crate::wit::keelson::registry::log::Level;

/// Writes one line at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::wit::keelson::registry::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    CAPTURED.with(|lines| lines.borrow_mut().push((level, message.to_owned())));
}

/// Writes one line at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes one line at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes one line at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes one line at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes one line at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static CAPTURED: std::cell::RefCell<Vec<(Level, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Returns and clears the lines this thread logged (only outside WebAssembly, for tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn take_captured() -> Vec<(Level, String)> {
    CAPTURED.with(|lines| std::mem::take(&mut *lines.borrow_mut()))
}

/// Installs, once, a panic hook that logs the panic message and location at
/// [`Level::Error`] and writes them to stderr, whose tail the host puts into the error of the
/// trapped call. A component aborts on panic and the message would otherwise be lost.
/// [`export_connector!`](crate::export_connector) calls this on every entry point.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = format!("connector panicked: {info}");
            log(Level::Error, &message);
            // Also on stderr, whose tail the host puts into the trap's error: the operator
            // sees why the call failed where it failed, not only in the log.
            eprintln!("{message}");
        }));
    });
}

/// Logs a `format!`-style message at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::trace(&::std::format!($($arg)*)) };
}

/// Logs a `format!`-style message at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}

/// Logs a `format!`-style message at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}

/// Logs a `format!`-style message at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}

/// Logs a `format!`-style message at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_format_and_capture_off_wasm() {
        let _ = take_captured();
        crate::info!("listed {} registries", 3);
        crate::warn!("skipped `{}`", "x");
        let lines = take_captured();
        assert_eq!(
            lines,
            vec![
                (Level::Info, "listed 3 registries".to_owned()),
                (Level::Warn, "skipped `x`".to_owned()),
            ]
        );
        assert!(take_captured().is_empty());
    }
}
