//! Fuzzes the listing's name escaping and href encoding through its public
//! renderers: in HTML a name can't open a tag or leave an attribute, its href
//! decodes back to the name, and the JSON is valid and holds the name unchanged.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use zcopy_http::listing::{Entry, Order, html, json};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let (head, rest) = data.split_at(9);
    let Ok(name) = std::str::from_utf8(rest) else {
        return;
    };
    let is_dir = head[8] & 1 == 1;
    let entry = Entry {
        name: name.to_string(),
        is_dir,
        size: u64::from_le_bytes(head[..8].try_into().unwrap()),
        modified: UNIX_EPOCH + Duration::from_secs(u64::from(head[0]) << 24),
    };
    let segments = ["d".to_string(), name.to_string()];
    let page = html(&segments, std::slice::from_ref(&entry), Order::default(), true);

    // The title carries the path, escaped: no markup appears from it.
    let start = page.find("<title>").unwrap() + "<title>".len();
    let end = start + page[start..].find('<').unwrap();
    assert!(
        page[start..end].starts_with("Index of /d/"),
        "path opened markup"
    );
    assert!(!page[start..end].contains(['"', '\'', '>']));
    assert_eq!(&page[end..end + "</title>".len()], "</title>");

    // The entry's row: <a href="HREF">TEXT</a>.
    let opening = "<tr><td class=\"name\"><a href=\"";
    let row = page.rfind(opening).unwrap() + opening.len();
    let href_end = row + page[row..].find('"').unwrap();
    let href = &page[row..href_end];
    assert!(
        href.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%/".contains(&b)),
        "href not percent-encoded: {href:?}"
    );
    let slash = if is_dir { "/" } else { "" };
    let decoded = percent_encoding::percent_decode_str(href)
        .decode_utf8()
        .unwrap();
    assert_eq!(decoded, format!("{name}{slash}"));
    assert!(
        !href[..href.len() - slash.len()].contains('/'),
        "a name holds one segment"
    );
    let text_start = href_end + "\">".len();
    assert_eq!(&page[href_end..text_start], "\">");
    let text_end = text_start + page[text_start..].find("</a>").unwrap();
    let text = &page[text_start..text_end];
    assert!(
        !text.contains(['<', '>', '"', '\'']),
        "unescaped name: {text:?}"
    );
    let unescaped = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    assert_eq!(unescaped, format!("{name}{slash}"));

    let listed: serde_json::Value = serde_json::from_str(&json(&[entry])).expect("valid JSON");
    assert_eq!(listed[0]["name"].as_str(), Some(name));
});
