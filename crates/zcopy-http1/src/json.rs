//! JSON string literals, the one escaper of the HTTP crates (directory listings,
//! the JSON access log).

use std::fmt::Write;

/// Appends `s` to `out` as a JSON string literal: `"` and `\` escaped, and every
/// control character (C0, DEL and the C1 range U+0080–U+009F, which some
/// terminals obey) written as `\uNNNN`.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a JSON string literal ([`push_str`]).
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::string;

    #[test]
    fn quotes_backslashes_and_every_control_character_are_escaped() {
        assert_eq!(string("a\"b\\\n"), "\"a\\\"b\\\\\\u000a\"");
        assert_eq!(
            string("\u{1}\u{1f}\u{7f}\u{80}\u{9f}\u{a0}é<"),
            "\"\\u0001\\u001f\\u007f\\u0080\\u009f\u{a0}é<\""
        );
    }
}
