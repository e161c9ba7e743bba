//! Writing command results to stdout.

use std::io::Write as _;

use serde::Serialize;

/// Writes `value` as pretty JSON and a newline.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
