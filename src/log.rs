//! Log output that a participant cannot forge lines in.
//!
//! Names, paths, editor names and error texts from clients reach the log
//! through `%` fields, which tracing writes as they are: a name holding a
//! line break and a timestamp would read as a line of its own, an escape
//! sequence would drive the operator's terminal. Every event is written in
//! one piece, so escaping each write's control characters but its final
//! line break keeps one event on one line whatever it holds.

use std::io::{self, Write};

/// Stderr, with control characters escaped as `\xNN` (tabs kept).
pub struct EscapedStderr;

impl Write for EscapedStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr().lock().write_all(&escape(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

fn escape(buf: &[u8]) -> Vec<u8> {
    let (body, end) = match buf.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (buf, &b""[..]),
    };
    let mut out = Vec::with_capacity(buf.len());
    for &byte in body {
        if (byte < 0x20 && byte != b'\t') || byte == 0x7f {
            out.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        } else {
            out.push(byte);
        }
    }
    out.extend_from_slice(end);
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn one_event_stays_one_line() {
        let forged = b"INFO joined name=eve\n2026-12-05T00:00:00Z INFO admin logged in\x1b[2J\n";
        let escaped = String::from_utf8(escape(forged)).unwrap();
        assert_eq!(
            escaped,
            "INFO joined name=eve\\x0a2026-12-05T00:00:00Z INFO admin logged in\\x1b[2J\n"
        );
        assert_eq!(
            escape("tab\there é\n".as_bytes()),
            "tab\there é\n".as_bytes()
        );
    }
}
