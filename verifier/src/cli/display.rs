//! Text from outside, made safe to print on a terminal.
//!
//! A log, a witness, a peer or a file can put any bytes into what the
//! verifier prints: a checkpoint note, an origin, an error message, a gRPC
//! status. Printed raw, ANSI and OSC escapes retitle the terminal or redraw
//! lines (a forged "verified … OK" after a carriage return), and a 10 MB
//! note floods it. So every line of human output goes through [`show`]:
//! control characters and bidirectional overrides are escaped, and what is
//! shown is capped, ending in "… N more bytes". `--json` and evidence files
//! are not human output: they keep the exact bytes, which JSON escapes.

use std::fmt::Write as _;

/// The most bytes [`show`] prints of one line of text: a message, a summary
/// or one line of a report.
pub const LINE_CAP: usize = 4 * 1024;

/// The most bytes [`show`] prints of one block: a piece of evidence such as
/// a signed note or an entry in base64. Room for a checkpoint at the size
/// the verifier fetches ([`super::remote::MAX_CHECKPOINT_BYTES`]) and for
/// the base64 of the largest entry, escaped.
pub const BLOCK_CAP: usize = 128 * 1024;

/// How [`show`] treats line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One line: a newline is escaped like any other control character, so
    /// the text cannot start a line of its own. Capped at [`LINE_CAP`].
    Line,
    /// A whole block, such as a note: newlines stay, every line's other
    /// characters are escaped. Capped at [`BLOCK_CAP`].
    Block,
}

/// `text` as it may be printed: every character that could steer a
/// terminal or reorder what is shown (C0 and C1 controls, DEL, the
/// bidirectional embeddings, overrides, isolates and marks, and the Unicode
/// line and paragraph separators) is written as a Rust escape such as
/// `\x1b`, `\r` or `\u{202e}`; in a [`Shape::Line`] a newline too. At most
/// the shape's cap of bytes is printed, then `… N more bytes` counts the
/// input bytes left out.
pub fn show(text: &str, shape: Shape) -> String {
    let cap = match shape {
        Shape::Line => LINE_CAP,
        Shape::Block => BLOCK_CAP,
    };
    let mut out = String::with_capacity(text.len().min(cap));
    for (at, c) in text.char_indices() {
        let start = out.len();
        if c == '\n' && shape == Shape::Block {
            out.push('\n');
        } else if is_unsafe(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if u32::from(c) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
            }
        } else {
            out.push(c);
        }
        if out.len() > cap {
            out.truncate(start);
            let _ = write!(out, "… {} more bytes", text.len() - at);
            break;
        }
    }
    out
}

/// Whether `c` is escaped by [`show`].
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped() {
        let hostile = "log\x1b]0;pwned\x07\r\x1b[2Kverified OK\u{9b}31m\x7f\u{202e}txt.exe\u{2066}";
        let shown = show(hostile, Shape::Line);
        assert_eq!(
            shown,
            "log\\x1b]0;pwned\\x07\\r\\x1b[2Kverified OK\\u{9b}31m\\x7f\\u{202e}txt.exe\\u{2066}"
        );
        assert!(shown.chars().all(|c| !is_unsafe(c)));
        assert_eq!(show("é ok — fine\\", Shape::Line), "é ok — fine\\");
    }

    #[test]
    fn newlines_stay_only_in_blocks() {
        let note = "origin\n5\n\r\x1b[1A\n";
        assert_eq!(show(note, Shape::Line), "origin\\n5\\n\\r\\x1b[1A\\n");
        assert_eq!(show(note, Shape::Block), "origin\n5\n\\r\\x1b[1A\n");
    }

    #[test]
    fn output_is_capped_and_counts_what_is_left_out() {
        let long = "a".repeat(10 << 20);
        let shown = show(&long, Shape::Line);
        assert_eq!(
            shown,
            format!(
                "{}… {} more bytes",
                "a".repeat(LINE_CAP),
                (10 << 20) - LINE_CAP
            )
        );
        let escapes = "\x1b".repeat(LINE_CAP);
        let shown = show(&escapes, Shape::Line);
        assert!(shown.len() <= LINE_CAP + 32, "{}", shown.len());
        assert!(shown.ends_with(&format!("… {} more bytes", LINE_CAP - LINE_CAP / 4)));
        let block = "line\n".repeat(BLOCK_CAP);
        assert!(show(&block, Shape::Block).len() <= BLOCK_CAP + 32);
        let exact = "b".repeat(LINE_CAP);
        assert_eq!(show(&exact, Shape::Line), exact);
    }
}
