//! Text that comes out of a plugin (log lines, stdout, stderr) made safe for the host's log:
//! capped in length and with control characters escaped, so a plugin cannot rewrite the
//! operator's terminal or forge log lines.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::sealed::Scrubber;

/// Replaces the connection's secret values, in every encoding the host knows (raw, JSON escapes,
/// percent-encoding, base64), with `[REDACTED]` in text the plugin produced, so a plugin that
/// prints its secret does not put it in the host's log or errors.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor(Arc<Scrubber>);

impl Redactor {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut scrubber = Scrubber::default();
        for secret in secrets {
            scrubber.add_as(&secret, "[REDACTED]");
        }
        Self(Arc::new(scrubber))
    }

    pub(crate) fn apply(&self, text: &str) -> String {
        self.0.text(text)
    }
}

/// Escapes control characters (ANSI escapes, NUL, CR, LF, BEL, …) as `\u{…}`/`\n`-style
/// sequences and cuts the result to about `max` bytes, marking the cut.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 16);
    for (i, c) in text.char_indices() {
        if out.len() >= max {
            let _ = write!(out, "… [{} more bytes]", text.len() - i);
            break;
        }
        // Controls, and the bidi and direction marks that reorder a line on screen.
        if c.is_control() || keelson_core::text::is_neutralised(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The last `max` bytes of `text` (or a little more, to stay on a character boundary),
/// sanitised.
pub(crate) fn tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    sanitize(text[start..].trim_end(), max * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let s = sanitize("a\u{1b}[31mred\0\r\nb", 100);
        assert_eq!(s, "a\\u{1b}[31mred\\u{0}\\r\\nb");
        assert!(!s.chars().any(char::is_control));
    }

    #[test]
    fn bidi_overrides_are_escaped() {
        let s = sanitize("ok\u{202e}txt.exe\u{2066}", 100);
        assert_eq!(s, "ok\\u{202e}txt.exe\\u{2066}");
    }

    #[test]
    fn long_text_is_cut_and_says_how_much_was_dropped() {
        let s = sanitize(&"x".repeat(100), 10);
        assert_eq!(s, "xxxxxxxxxx… [90 more bytes]");
    }

    #[test]
    fn secret_values_are_redacted_in_every_encoding() {
        let r = Redactor::new(["hunter2/secret".to_owned(), "ab".to_owned()]);
        assert_eq!(
            r.apply(
                "token=hunter2/secret ab hunter2%2Fsecret aHVudGVyMi9zZWNyZXQ= hunter2\\/secret"
            ),
            "token=[REDACTED] ab [REDACTED] [REDACTED] hunter2\\/secret"
        );
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("0123456789\n", 4), "789");
    }
}
