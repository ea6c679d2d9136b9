//! Conversion between LSP-style positions (line, column in code units of a
//! negotiated encoding) and character offsets in a [`Rope`].
//!
//! Lines break at `\n`, `\r\n` and `\r` only, as in LSP (ropey's `cr_lines`
//! feature without `unicode_lines`). Columns count UTF-8 bytes, UTF-16 code
//! units or Unicode scalar values. Out-of-range positions are clamped the way
//! the LSP specification asks: a column past the end of its line means the
//! end of the line, a line past the end of the document means its end. A
//! column inside a multi-unit character snaps to that character's start.
//!
//! This module knows nothing about LSP types; `lsp-proxy` maps them.

use ropey::{Rope, RopeSlice};

/// How positions count columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Utf8,
    Utf16,
    Utf32,
}

impl Encoding {
    fn units(self, c: char) -> usize {
        match self {
            Encoding::Utf8 => c.len_utf8(),
            Encoding::Utf16 => c.len_utf16(),
            Encoding::Utf32 => 1,
        }
    }
}

/// A zero-based line and a column in code units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinePos {
    pub line: u32,
    pub column: u32,
}

/// Number of characters on the line, not counting its terminator.
fn line_len_without_terminator(line: RopeSlice) -> usize {
    let len = line.len_chars();
    if len == 0 {
        return 0;
    }
    match line.char(len - 1) {
        '\n' if len >= 2 && line.char(len - 2) == '\r' => len - 2,
        '\n' | '\r' => len - 1,
        _ => len,
    }
}

/// Character offset of `pos` in `rope`.
pub fn to_char(rope: &Rope, pos: LinePos, enc: Encoding) -> usize {
    let line_idx = pos.line as usize;
    if line_idx >= rope.len_lines() {
        return rope.len_chars();
    }
    let line_start = rope.line_to_char(line_idx);
    let line = rope.line(line_idx);
    let line_len = line_len_without_terminator(line);
    let wanted = pos.column as usize;
    if enc == Encoding::Utf32 {
        return line_start + wanted.min(line_len);
    }
    let mut units = 0usize;
    for (i, c) in line.chars().take(line_len).enumerate() {
        let next = units + enc.units(c);
        if next > wanted {
            return line_start + i;
        }
        units = next;
    }
    line_start + line_len
}

/// Whether `pos` names a place in `rope`: a column within its line (its
/// end included), or the start of the line after the last, which editors
/// use for "the end of the text". [`to_char`] clamps anything else, which
/// hides that the editor's text is not what `rope` says.
pub fn fits(rope: &Rope, pos: LinePos, enc: Encoding) -> bool {
    let line_idx = pos.line as usize;
    if line_idx >= rope.len_lines() {
        return line_idx == rope.len_lines() && pos.column == 0;
    }
    let line = rope.line(line_idx);
    let line_len = line_len_without_terminator(line);
    let units: usize = match enc {
        Encoding::Utf32 => line_len,
        _ => line.chars().take(line_len).map(|c| enc.units(c)).sum(),
    };
    pos.column as usize <= units
}

/// Position of character offset `idx` (clamped to the document end).
pub fn to_pos(rope: &Rope, idx: usize, enc: Encoding) -> LinePos {
    let idx = idx.min(rope.len_chars());
    let line_idx = rope.char_to_line(idx);
    let line_start = rope.line_to_char(line_idx);
    let column = match enc {
        Encoding::Utf32 => idx - line_start,
        _ => rope
            .slice(line_start..idx)
            .chars()
            .map(|c| enc.units(c))
            .sum(),
    };
    LinePos {
        line: line_idx as u32,
        column: column as u32,
    }
}

/// FNV-1a over the text's UTF-8 bytes, as 16 hex digits: cheap, stable
/// across machines, and the same for a rope however it is chunked. Used to
/// check that hub and proxy hold the same text (not for security).
pub fn checksum(rope: &Rope) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in rope.chunks() {
        for byte in chunk.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// True when `idx` falls between the `\r` and `\n` of a CRLF pair, a place
/// no LSP position can name.
pub fn splits_crlf(rope: &Rope, idx: usize) -> bool {
    idx > 0 && idx < rope.len_chars() && rope.char(idx - 1) == '\r' && rope.char(idx) == '\n'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(line: u32, column: u32) -> LinePos {
        LinePos { line, column }
    }

    #[test]
    fn encodings_count_differently() {
        // é is 2 UTF-8 bytes, 😀 is 4 bytes / 2 UTF-16 units, 中 is 3 bytes.
        let rope = Rope::from_str("aé😀中b\nx");
        let b = 4;
        assert_eq!(to_char(&rope, pos(0, 1 + 2 + 4 + 3), Encoding::Utf8), b);
        assert_eq!(to_char(&rope, pos(0, 1 + 1 + 2 + 1), Encoding::Utf16), b);
        assert_eq!(to_char(&rope, pos(0, 4), Encoding::Utf32), b);
        assert_eq!(to_pos(&rope, b, Encoding::Utf8), pos(0, 10));
        assert_eq!(to_pos(&rope, b, Encoding::Utf16), pos(0, 5));
        assert_eq!(to_pos(&rope, b, Encoding::Utf32), pos(0, 4));
    }

    #[test]
    fn inside_a_character_snaps_to_its_start() {
        let rope = Rope::from_str("😀x");
        assert_eq!(to_char(&rope, pos(0, 1), Encoding::Utf16), 0);
        assert_eq!(to_char(&rope, pos(0, 3), Encoding::Utf8), 0);
    }

    #[test]
    fn line_breaks_of_every_kind() {
        let rope = Rope::from_str("a\r\nb\rc\nd");
        assert_eq!(rope.len_lines(), 4);
        assert_eq!(to_char(&rope, pos(1, 0), Encoding::Utf16), 3);
        assert_eq!(to_char(&rope, pos(2, 0), Encoding::Utf16), 5);
        assert_eq!(to_char(&rope, pos(3, 0), Encoding::Utf16), 7);
        // Past the end of a CRLF line means before the `\r`.
        assert_eq!(to_char(&rope, pos(0, 9), Encoding::Utf16), 1);
        assert_eq!(to_pos(&rope, 3, Encoding::Utf8), pos(1, 0));
        assert!(splits_crlf(&rope, 2));
        assert!(!splits_crlf(&rope, 1));
    }

    #[test]
    fn checksum_ignores_chunking() {
        let text = "é😀\r\n".repeat(5000);
        let mut built = Rope::new();
        for (i, c) in text.chars().enumerate() {
            built.insert_char(i, c);
        }
        assert_eq!(checksum(&built), checksum(&Rope::from_str(&text)));
        assert_ne!(
            checksum(&Rope::from_str("a")),
            checksum(&Rope::from_str("b"))
        );
        assert_eq!(checksum(&Rope::new()), "cbf29ce484222325");
    }

    #[test]
    fn clamps_past_the_end() {
        let rope = Rope::from_str("ab\ncd");
        assert_eq!(to_char(&rope, pos(7, 0), Encoding::Utf32), 5);
        assert_eq!(to_char(&rope, pos(1, 99), Encoding::Utf32), 5);
        assert_eq!(to_pos(&rope, 99, Encoding::Utf32), pos(1, 2));
        let empty = Rope::new();
        assert_eq!(to_char(&empty, pos(0, 3), Encoding::Utf16), 0);
        assert_eq!(to_pos(&empty, 0, Encoding::Utf16), pos(0, 0));
    }

    fn any_encoding() -> impl Strategy<Value = Encoding> {
        prop_oneof![
            Just(Encoding::Utf8),
            Just(Encoding::Utf16),
            Just(Encoding::Utf32)
        ]
    }

    proptest! {
        #[test]
        fn round_trips_at_every_char_boundary(
            text in "[a😀中é\u{301}\r\n]{0,24}",
            enc in any_encoding(),
        ) {
            let rope = Rope::from_str(&text);
            for idx in 0..=rope.len_chars() {
                if splits_crlf(&rope, idx) {
                    continue;
                }
                let p = to_pos(&rope, idx, enc);
                prop_assert_eq!(to_char(&rope, p, enc), idx, "at {} as {:?}", idx, p);
            }
        }

        #[test]
        fn positions_are_monotonic(text in "[a😀\r\n]{0,16}", enc in any_encoding()) {
            let rope = Rope::from_str(&text);
            let positions: Vec<LinePos> =
                (0..=rope.len_chars()).map(|i| to_pos(&rope, i, enc)).collect();
            for pair in positions.windows(2) {
                prop_assert!(pair[0] <= pair[1]);
            }
        }
    }
}
