//! Writing command results to stdout.
//!
//! Much of what the CLI prints came from a plugin, so every text line goes out through
//! [`line`] or [`indented`], which neutralise control and bidi characters with
//! [`keelson_core::text`], and JSON through [`json`], which writes them as `\u` escapes (the
//! data is unchanged for a JSON reader; a terminal sees only ASCII).

use std::io::{self, Write as _};

use keelson_core::text::{for_terminal, for_terminal_multiline, is_neutralised};
use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

/// Writes `text` and a newline, neutralised as one line (a newline in it is escaped too).
pub(crate) fn line(out: &mut impl io::Write, text: &str) -> io::Result<()> {
    writeln!(out, "{}", for_terminal(text))
}

/// Writes each line of the multi-line `text` after `prefix`, neutralised (tabs kept).
pub(crate) fn indented(out: &mut impl io::Write, prefix: &str, text: &str) -> io::Result<()> {
    for text_line in for_terminal_multiline(text).lines() {
        writeln!(out, "{prefix}{text_line}")?;
    }
    Ok(())
}

/// Writes `value` as pretty JSON and a newline.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    write_json(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn write_json<T: Serialize + ?Sized>(
    out: &mut impl io::Write,
    value: &T,
) -> serde_json::Result<()> {
    let mut serializer =
        serde_json::Serializer::with_formatter(out, TerminalSafe(PrettyFormatter::new()));
    value.serialize(&mut serializer)
}

/// Pretty JSON whose strings carry no raw control or bidi characters: serde_json escapes C0
/// itself; DEL, C1 and the bidi characters, which JSON allows raw, become `\u` escapes with
/// four hex digits (`\u202e`) here.
struct TerminalSafe(PrettyFormatter<'static>);

impl Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_neutralised(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                // Every neutralised character is in the Basic Multilingual Plane: one `\u` each.
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_reach_the_terminal_as_ascii_escapes_and_decode_unchanged() {
        let title = "t\x1b]52;c;SGk=\x07 \u{9b}2J \u{202e}gnp.exe \x7f é";
        let value = serde_json::json!({ "title": title, "tags": ["a\u{2066}b"] });
        let mut out = Vec::new();
        write_json(&mut out, &value).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.chars().any(|c| is_neutralised(c) && c != '\n'),
            "{text}"
        );
        assert!(
            text.contains(r"\u001b]52;c;SGk=\u0007 \u009b2J \u202egnp.exe \u007f é"),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
        // Still the pretty layout.
        assert!(text.starts_with("{\n  \""), "{text}");
    }

    #[test]
    fn lines_are_neutralised_and_multiline_text_is_indented() {
        let mut out = Vec::new();
        line(&mut out, "account acme\x1b[2J\nforged").unwrap();
        indented(&mut out, "  ", "one\r\n\ttwo\x07").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "account acme\\u{1b}[2J\\u{a}forged\n  one\n  \ttwo\\u{7}\n"
        );
    }
}
