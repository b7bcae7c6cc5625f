//! `zcopy engines`.

use crate::util::{stdout_of, zcopy};

#[test]
fn table_lists_all_ten_engines() {
    let text = stdout_of(&mut zcopy(&["engines"]));
    for kind in zcopy::EngineKind::ALL {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{} ", kind.name()))),
            "{} missing from:\n{text}",
            kind.name()
        );
    }
}

#[test]
fn json_says_why_an_engine_is_not_supported() {
    let text = stdout_of(&mut zcopy(&["engines", "--json"]));
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("\"engine\"")).collect();
    assert_eq!(rows.len(), 10, "{text}");
    for row in rows {
        if row.contains("\"supported\":false") {
            assert!(row.contains("\"why_not\":\""), "{row}");
        } else {
            assert!(row.contains("\"probed_with\":\""), "{row}");
        }
    }
    // The baseline works everywhere.
    assert!(
        text.contains("{\"engine\":\"read-write\",\"supported\":true"),
        "{text}"
    );
}
