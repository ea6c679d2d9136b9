//! LSP positions over a `[char]` buffer, as the simulated editors compute them.
//!
//! Written independently of `chorus_protocol::text` on purpose: if the proxy
//! and the editors shared one conversion, a bug in it would go unnoticed.
//! Lines break after `\n`, `\r\n` and a lone `\r`, as the LSP specification
//! says; columns count UTF-8 bytes, UTF-16 code units or scalar values.

use serde_json::{json, Value};

/// How an editor counts columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Utf8,
    Utf16,
    Utf32,
}

impl Encoding {
    /// The name LSP uses in `positionEncodings` / `positionEncoding`.
    pub fn lsp_name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16 => "utf-16",
            Encoding::Utf32 => "utf-32",
        }
    }

    pub fn from_lsp_name(name: &str) -> Option<Encoding> {
        match name {
            "utf-8" => Some(Encoding::Utf8),
            "utf-16" => Some(Encoding::Utf16),
            "utf-32" => Some(Encoding::Utf32),
            _ => None,
        }
    }

    /// Code units one character takes in this encoding.
    pub fn units(self, c: char) -> usize {
        match self {
            Encoding::Utf8 => c.len_utf8(),
            Encoding::Utf16 => c.len_utf16(),
            Encoding::Utf32 => 1,
        }
    }

    /// Code units a whole string takes (VS Code's `rangeLength`).
    pub fn len(self, text: &[char]) -> usize {
        text.iter().map(|&c| self.units(c)).sum()
    }
}

/// A zero-based line and a column in code units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: u32,
    pub character: u32,
}

impl Position {
    pub fn to_json(self) -> Value {
        json!({ "line": self.line, "character": self.character })
    }

    pub fn from_json(value: &Value) -> Result<Position, String> {
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("position without a valid {name:?}: {value}"))
        };
        Ok(Position {
            line: field("line")?,
            character: field("character")?,
        })
    }
}

/// Offsets where each line starts; always at least one line.
pub fn line_starts(text: &[char]) -> Vec<usize> {
    let mut starts = vec![0];
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            '\r' if text.get(i + 1) == Some(&'\n') => {
                i += 2;
                starts.push(i);
            }
            '\r' | '\n' => {
                i += 1;
                starts.push(i);
            }
            _ => i += 1,
        }
    }
    starts
}

/// End of line `line`'s content, before its terminator.
fn content_end(text: &[char], starts: &[usize], line: usize) -> usize {
    let mut end = starts.get(line + 1).copied().unwrap_or(text.len());
    if end > starts[line] && text[end - 1] == '\n' {
        end -= 1;
    }
    if end > starts[line] && text[end - 1] == '\r' {
        end -= 1;
    }
    end
}

/// True when `idx` sits between the `\r` and `\n` of a CRLF pair, a place
/// no LSP position can name and no editor puts a cursor.
pub fn splits_crlf(text: &[char], idx: usize) -> bool {
    idx > 0 && idx < text.len() && text[idx - 1] == '\r' && text[idx] == '\n'
}

/// The position of character offset `idx`. Panics on an offset that no
/// position can name: the harness never produces one.
pub fn to_position(text: &[char], idx: usize, enc: Encoding) -> Position {
    assert!(
        idx <= text.len(),
        "offset {idx} past the end ({})",
        text.len()
    );
    assert!(!splits_crlf(text, idx), "offset {idx} splits a CRLF pair");
    let starts = line_starts(text);
    let line = starts.partition_point(|&start| start <= idx) - 1;
    let column: usize = text[starts[line]..idx].iter().map(|&c| enc.units(c)).sum();
    Position {
        line: line as u32,
        character: column as u32,
    }
}

/// What resolving a position found, beside the offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    Exact(usize),
    /// Past the end of its line or of the document: clamped, as LSP says.
    Clamped(usize),
    /// Inside a multi-unit character (half a surrogate pair, mid UTF-8
    /// sequence): snapped to the character's start. LSP leaves this
    /// undefined, so the editors report it as a protocol violation.
    InsideCharacter(usize),
}

impl Resolved {
    pub fn offset(&self) -> usize {
        match *self {
            Resolved::Exact(i) | Resolved::Clamped(i) | Resolved::InsideCharacter(i) => i,
        }
    }
}

/// The character offset a position names.
pub fn to_offset(text: &[char], pos: Position, enc: Encoding) -> Resolved {
    let starts = line_starts(text);
    let line = pos.line as usize;
    if line >= starts.len() {
        return Resolved::Clamped(text.len());
    }
    let end = content_end(text, &starts, line);
    let wanted = pos.character as usize;
    let mut units = 0;
    for (idx, &c) in text.iter().enumerate().take(end).skip(starts[line]) {
        if units == wanted {
            return Resolved::Exact(idx);
        }
        units += enc.units(c);
        if units > wanted {
            return Resolved::InsideCharacter(idx);
        }
    }
    if units == wanted {
        Resolved::Exact(end)
    } else {
        Resolved::Clamped(end)
    }
}

/// An LSP `Range` for `[start, end)` in `text`.
pub fn range_json(text: &[char], start: usize, end: usize, enc: Encoding) -> Value {
    json!({
        "start": to_position(text, start, enc).to_json(),
        "end": to_position(text, end, enc).to_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn columns_per_encoding() {
        let text = chars("a😀中\r\nb");
        assert_eq!(to_position(&text, 3, Encoding::Utf16).character, 4);
        assert_eq!(to_position(&text, 3, Encoding::Utf8).character, 8);
        assert_eq!(to_position(&text, 3, Encoding::Utf32).character, 3);
        assert_eq!(to_position(&text, 5, Encoding::Utf16).line, 1);
        let pos = Position {
            line: 0,
            character: 2,
        };
        assert_eq!(
            to_offset(&text, pos, Encoding::Utf16),
            Resolved::InsideCharacter(1)
        );
        let past = Position {
            line: 0,
            character: 99,
        };
        assert_eq!(
            to_offset(&text, past, Encoding::Utf16),
            Resolved::Clamped(3)
        );
        assert_eq!(line_starts(&chars("a\rb\r\nc\n")), vec![0, 2, 5, 7]);
    }

    #[test]
    fn round_trip() {
        let text = chars("x👩\u{200d}👩\u{200d}👧e\u{301}\r\n中\ry\n");
        for enc in [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32] {
            for idx in 0..=text.len() {
                if splits_crlf(&text, idx) {
                    continue;
                }
                let pos = to_position(&text, idx, enc);
                assert_eq!(
                    to_offset(&text, pos, enc),
                    Resolved::Exact(idx),
                    "{enc:?} {idx}"
                );
            }
        }
    }
}
