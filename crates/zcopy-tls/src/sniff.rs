//! What the first bytes on a TLS port are: a TLS handshake, plain HTTP, or neither.

/// The verdict on a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// Too few bytes to tell yet.
    NeedMore,
    /// A TLS handshake record (content type 22, version 3.x).
    Tls,
    /// An HTTP request line: answer [`PLAIN_HTTP_400`] (optional) and close.
    PlainHttp,
    /// Anything else: close without a word.
    Garbage,
}

/// Request-line starts recognised as plain HTTP (HTTP/2's preface starts "PRI ").
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI ",
];

/// Bytes [`classify`] may need before it can decide.
pub const SNIFF_LEN: usize = 8;

/// Classify a connection's first bytes (all of them received so far, or the first
/// [`SNIFF_LEN`]).
pub fn classify(first: &[u8]) -> FirstBytes {
    match first {
        [] | [0x16] | [0x16, 0x03] => FirstBytes::NeedMore,
        [0x16, 0x03, minor, ..] if *minor <= 0x04 => FirstBytes::Tls,
        _ => {
            for m in METHODS {
                if first.starts_with(m) {
                    return FirstBytes::PlainHttp;
                }
                if m.starts_with(first) {
                    return FirstBytes::NeedMore;
                }
            }
            FirstBytes::Garbage
        }
    }
}

/// The clear-text answer to plain HTTP on a TLS port (nginx sends a 400 too).
pub const PLAIN_HTTP_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 49\r\n\
Connection: close\r\n\
\r\n\
This port speaks HTTPS: use https:// to reach it\n";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tls_records() {
        assert_eq!(classify(&[0x16, 3, 1, 0, 200]), FirstBytes::Tls);
        assert_eq!(classify(&[0x16, 3, 3]), FirstBytes::Tls);
        assert_eq!(classify(&[0x16, 3, 9]), FirstBytes::Garbage);
        assert_eq!(classify(&[0x16]), FirstBytes::NeedMore);
        assert_eq!(classify(&[]), FirstBytes::NeedMore);
    }

    #[test]
    fn plain_http() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), FirstBytes::PlainHttp);
        assert_eq!(classify(b"OPTIONS "), FirstBytes::PlainHttp);
        assert_eq!(classify(b"HEA"), FirstBytes::NeedMore);
        assert_eq!(classify(b"G"), FirstBytes::NeedMore);
        assert_eq!(classify(b"GETX"), FirstBytes::Garbage);
        assert_eq!(classify(b"get /"), FirstBytes::Garbage);
    }

    #[test]
    fn garbage() {
        assert_eq!(classify(b"\x00\x00"), FirstBytes::Garbage);
        assert_eq!(classify(b"SSH-2.0-OpenSSH"), FirstBytes::Garbage);
        assert_eq!(classify(&[0x80, 0x2e, 0x01]), FirstBytes::Garbage); // SSLv2 hello
    }

    #[test]
    fn the_400_says_its_length() {
        let text = std::str::from_utf8(PLAIN_HTTP_400).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
    }

    proptest! {
        /// Deciding never needs more than SNIFF_LEN bytes, and a decision made
        /// on a prefix stands when more bytes come.
        #[test]
        fn decisions_are_stable(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let full = classify(&bytes[..bytes.len().min(SNIFF_LEN)]);
            if bytes.len() >= SNIFF_LEN {
                prop_assert_ne!(full, FirstBytes::NeedMore);
            }
            for n in 0..bytes.len() {
                let early = classify(&bytes[..n]);
                if early != FirstBytes::NeedMore {
                    prop_assert_eq!(early, classify(&bytes));
                }
            }
        }
    }
}
