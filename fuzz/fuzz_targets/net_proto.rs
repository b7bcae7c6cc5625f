//! Fuzzes the send/recv wire format as a receiver reads it: a hello, then entry
//! headers (each path checked as `recv` checks it) and replies. Whatever parses
//! writes back to the same bytes, and an accepted path can't leave the output dir.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use zcopy_net::dest::check_path;
use zcopy_net::proto::{Entry, Kind, MAX_MESSAGE, MAX_PATH, Reply, read_hello, write_hello};

fuzz_target!(|data: &[u8]| {
    let mut r = Cursor::new(data);
    if let Ok(features) = read_hello(&mut r) {
        let mut out = Vec::new();
        write_hello(&mut out, features).unwrap();
        assert_eq!(out, data[..10]);
    } else {
        r.set_position(0);
    }
    // Then alternate entry headers and replies until the bytes run out or one fails.
    loop {
        let at = r.position() as usize;
        let Ok(entry) = Entry::read(&mut r) else {
            break;
        };
        let used = &data[at..r.position() as usize];
        assert!(entry.path.len() <= MAX_PATH);
        let mut out = Vec::new();
        entry.write(&mut out).unwrap();
        assert_eq!(out, used, "entry writes back to other bytes");
        if entry.kind != Kind::End
            && let Ok(segs) = check_path(&entry.path)
        {
            assert!(!segs.is_empty());
            for s in segs {
                let s = std::os::unix::ffi::OsStrExt::as_bytes(s);
                assert!(!s.is_empty() && s != b"." && s != b"..");
                assert!(!s.contains(&b'/') && !s.contains(&0));
            }
        }
        let at = r.position() as usize;
        let Ok(reply) = Reply::read(&mut r) else {
            break;
        };
        let used = &data[at..r.position() as usize];
        assert!(reply.message.len() <= 3 * MAX_MESSAGE);
        assert_eq!(reply.ok, used[0] == 0);
        // Bytes that are canonical (flag 0/1, UTF-8 message) write back unchanged.
        if used[0] <= 1 && std::str::from_utf8(&used[11..]).is_ok() {
            let mut out = Vec::new();
            reply.write(&mut out).unwrap();
            assert_eq!(out, used, "reply writes back to other bytes");
        }
    }
});
