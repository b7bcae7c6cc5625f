//! Fuzzes `path::clean`: an accepted path never holds a segment that could climb out
//! of the root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zcopy_http::path::clean;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    match clean(target) {
        Ok(p) => {
            assert!(target.starts_with('/'));
            for s in &p.segments {
                assert!(!s.is_empty());
                assert!(s != "." && s != "..");
                assert!(!s.contains(['/', '\\', '\0']));
            }
        }
        Err(e) => assert_eq!(e.status, 400),
    }
});
