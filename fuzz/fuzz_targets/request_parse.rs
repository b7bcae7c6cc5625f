//! Fuzzes `request::parse` with small and default limits and checks its invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zcopy_http::request::{BodyFraming, Limits, Parsed, parse};

fuzz_target!(|data: &[u8]| {
    let small = Limits {
        max_request_line: 64,
        max_header_bytes: 256,
        max_headers: 8,
    };
    for limits in [Limits::default(), small] {
        match parse(data, &limits) {
            Ok(Parsed::Complete(req, used)) => {
                assert!(used <= data.len());
                assert!(used <= limits.max_header_bytes);
                assert!(data[..used].ends_with(b"\r\n\r\n"));
                assert!(!data[..used].contains(&0));
                assert!(
                    req.target.starts_with('/')
                        || (&*req.target == "*" && req.method_name == "OPTIONS")
                );
                let chunked = req.body == BodyFraming::Chunked;
                assert!(!(chunked && req.keep_alive));
                match req.body {
                    BodyFraming::Length(n) => assert_eq!(req.body_len, n),
                    _ => assert_eq!(req.body_len, 0),
                }
                // The head alone parses to the same request.
                assert_eq!(
                    parse(&data[..used], &limits),
                    Ok(Parsed::Complete(req, used))
                );
            }
            Ok(Parsed::Partial) => {
                assert!(data.len() <= limits.max_header_bytes);
            }
            Err(e) => {
                assert!(matches!(e.status, 400 | 414 | 431 | 501 | 505), "{e:?}");
            }
        }
    }
});
