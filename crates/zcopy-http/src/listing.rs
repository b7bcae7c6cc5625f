//! Directory listings: HTML (every name escaped) and JSON, sorted.
//! (stub: signatures fixed, bodies to be written)

use std::time::SystemTime;

/// One directory entry to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// File name (not escaped).
    pub name: String,
    /// Is a directory.
    pub is_dir: bool,
    /// Size in bytes (files).
    pub size: u64,
    /// Modification time.
    pub modified: SystemTime,
}

/// Reads the entries of an open directory, skipping dotfiles unless `hidden`, sorted
/// (directories first, then by name).
pub fn read_entries(dir: &std::fs::File, hidden: bool) -> std::io::Result<Vec<Entry>> {
    let _ = (dir, hidden);
    Ok(Vec::new())
}

/// An HTML page listing `entries` for the URL path `url_path` (decoded; escaped here).
pub fn html(url_path: &str, entries: &[Entry]) -> String {
    let _ = (url_path, entries);
    String::new()
}

/// A JSON array listing `entries`.
pub fn json(entries: &[Entry]) -> String {
    let _ = entries;
    String::from("[]")
}
