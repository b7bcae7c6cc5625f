//! Reading the TOML config file: a mistake is reported as `FILE:LINE:COLUMN: message`.

use std::path::Path;

use super::settings::Settings;

/// Reads and checks `path` (unknown keys, wrong types and bad values are errors).
pub fn load(path: &Path) -> Result<Settings, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|(at, msg)| match at {
        Some((line, col)) => format!("{}:{line}:{col}: {msg}", path.display()),
        None => format!("{}: {msg}", path.display()),
    })
}

/// Parses config text; an error comes with its 1-based line and column if known.
pub fn parse(text: &str) -> Result<Settings, (Option<(usize, usize)>, String)> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let at = e.span().map(|s| line_col(text, s.start));
        (at, e.message().trim_end().to_owned())
    })
}

/// The 1-based line and column (in characters) of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (Option<(usize, usize)>, String) {
        parse(text).expect_err(text)
    }

    #[test]
    fn good_file_parses() {
        let s = parse(
            "root = \"/srv\"\nlisten = [\"127.0.0.1:0\"]\nheader-timeout = 3\n\
             [[rule]]\nglob = \"assets/**\"\ncache-control = \"max-age=60\"\n\
             header = [\"X-A: 1\"]\nlisting = false\n",
        )
        .unwrap();
        assert_eq!(s.rule.len(), 1);
        assert_eq!(s.header_timeout.unwrap().0, 3.0);
    }

    #[test]
    fn the_contrib_example_parses() {
        let s = parse(include_str!("../../../../contrib/zcopy.toml")).unwrap();
        assert_eq!(s.rule.len(), 2);
    }

    #[test]
    fn mistakes_say_where() {
        let (at, msg) = err("root = \".\"\nbogus = 1\n");
        assert_eq!(at, Some((2, 1)), "{msg}");
        assert!(msg.contains("bogus"), "{msg}");
        let (at, _) = err("workers = \"two\"\n");
        assert_eq!(at, Some((1, 11)));
        let (at, msg) = err("max-connections = -1\n");
        assert_eq!(at.map(|a| a.0), Some(1), "{msg}");
        let (at, msg) = err("[[rule]]\nglob = \"../**\"\n");
        assert_eq!(at, Some((2, 8)), "{msg}");
        assert!(msg.contains("escapes"), "{msg}");
        let (at, msg) = err("header = [\"X-A: a\\r\\nSet-Cookie: x\"]\n");
        assert_eq!(at.map(|a| a.0), Some(1), "{msg}");
        assert!(msg.contains("control character"), "{msg}");
        let (_, msg) = err("[[rule]]\nglob = \"x\"\nrate-limit = 5\n");
        assert!(msg.contains("reserved"), "{msg}");
        let (_, msg) = err("[[rule]]\nglob = \"x\"\nnope = 5\n");
        assert!(msg.contains("nope"), "{msg}");
        let (_, msg) = err("idle-timeout = -1.5\n");
        assert!(msg.contains("seconds"), "{msg}");
    }
}
