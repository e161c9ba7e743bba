//! Text from a plugin, made safe to show: on a terminal, in a CSV cell, in a log line.
//!
//! A plugin's strings (titles, descriptions, account names, error messages) are data, but a
//! terminal runs the control characters in them: `ESC ] 52 ; c ; … BEL` writes the clipboard,
//! `ESC [ 2 J` clears the screen, a right-to-left override makes `exe.txt` read as `txt.exe`, and
//! a newline forges a line of output. The store keeps text exactly as the plugin sent it;
//! [`for_terminal`] and [`for_terminal_multiline`] neutralise it where it is written out.
//!
//! Neutralised, by [`is_neutralised`]: the C0 controls U+0000–U+001F, DEL, the C1 controls
//! U+0080–U+009F, and the bidirectional marks, embeddings, overrides and isolates (U+061C,
//! U+200E, U+200F, U+202A–U+202E, U+2066–U+2069). Each becomes a visible escape in Rust's form,
//! `\u{1b}`, rather than U+FFFD or nothing, so an operator sees that something was there and
//! what it was. The escape is for reading, not for decoding: a `\` already in the text is left
//! as it is.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is neutralised by [`for_terminal`]: a C0 or C1 control, DEL, or a bidirectional
/// formatting character.
pub fn is_neutralised(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// `text` for one line of output: every [`is_neutralised`] character, tab and newline included,
/// replaced by its escape (`\u{1b}`). Borrows when there is nothing to replace.
///
/// # Examples
///
/// ```
/// use keelson_core::text::for_terminal;
///
/// assert_eq!(for_terminal("CVE-1\x1b[2J"), r"CVE-1\u{1b}[2J");
/// assert_eq!(for_terminal("plain title"), "plain title");
/// ```
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    neutralise(text, false)
}

/// `text` for a field that may span lines (a description, connection instructions): as
/// [`for_terminal`], but tab and newline are kept, and a carriage return right before a newline
/// is dropped (Windows line ends); any other carriage return is escaped, since it would move the
/// cursor back over what was written.
pub fn for_terminal_multiline(text: &str) -> Cow<'_, str> {
    neutralise(text, true)
}

fn neutralise(text: &str, multiline: bool) -> Cow<'_, str> {
    let keep = |c: char| multiline && (c == '\n' || c == '\t');
    let Some(first) = text.find(|c: char| is_neutralised(c) && !keep(c)) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    let mut chars = text[first..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && multiline && chars.peek() == Some(&'\n') {
            continue;
        }
        if is_neutralised(c) && !keep(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_become_visible_text() {
        // The two that got through: a clipboard write (OSC 52) and a screen clear.
        assert_eq!(
            for_terminal("t\x1b]52;c;SGk=\x07\x1b[2J"),
            r"t\u{1b}]52;c;SGk=\u{7}\u{1b}[2J"
        );
        assert_eq!(for_terminal("a\x7fb\u{9b}31m"), r"a\u{7f}b\u{9b}31m");
        assert_eq!(for_terminal("\0\x08\x0c"), r"\u{0}\u{8}\u{c}");
    }

    #[test]
    fn bidi_controls_are_escaped() {
        for (c, escaped) in [
            ('\u{202a}', r"\u{202a}"),
            ('\u{202e}', r"\u{202e}"),
            ('\u{2066}', r"\u{2066}"),
            ('\u{2069}', r"\u{2069}"),
            ('\u{200e}', r"\u{200e}"),
            ('\u{200f}', r"\u{200f}"),
            ('\u{61c}', r"\u{61c}"),
        ] {
            assert_eq!(for_terminal(&format!("x{c}y")), format!("x{escaped}y"));
        }
    }

    #[test]
    fn one_line_text_cannot_forge_lines() {
        assert_eq!(
            for_terminal("ok\nerror: forged\r\tz"),
            r"ok\u{a}error: forged\u{d}\u{9}z"
        );
    }

    #[test]
    fn multiline_text_keeps_newlines_and_tabs_only() {
        assert_eq!(
            for_terminal_multiline("one\r\n\ttwo\rthree\x1b[2J\n"),
            "one\n\ttwo\\u{d}three\\u{1b}[2J\n"
        );
        assert_eq!(for_terminal_multiline("a\r"), r"a\u{d}");
    }

    #[test]
    fn printable_text_is_borrowed_unchanged() {
        for text in [
            "",
            "CVE-2024-3094 in liblzma5",
            "Ünïcödé, 中文, עברית, emoji 🦀",
            r"C:\path\u{1b}",
            "\u{a0}non-breaking \u{200b}zero-width",
        ] {
            assert!(
                matches!(for_terminal(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
        assert!(matches!(for_terminal_multiline("a\n\tb"), Cow::Borrowed(_)));
    }

    #[test]
    fn nothing_neutralised_survives_the_escape() {
        let every: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let out = for_terminal(&every);
        assert!(!out.chars().any(is_neutralised), "{out:?}");
        let out = for_terminal_multiline(&every);
        assert!(
            !out.chars()
                .any(|c| is_neutralised(c) && c != '\n' && c != '\t'),
            "{out:?}"
        );
    }
}
