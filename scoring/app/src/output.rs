//! Writing results to standard output. A reader that goes away early (`vigil ... | head`) ends
//! the output quietly instead of failing the command.

use std::fmt::Display;
use std::io::{ErrorKind, Write};

pub fn print(text: impl Display) -> anyhow::Result<()> {
    match write!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
