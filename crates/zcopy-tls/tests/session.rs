//! A rustls client talking to a [`Session`] in memory: handshake for every key
//! type and version, ALPN, resumption, data both ways, close_notify, plain HTTP
//! and garbage, handshake deadline, and file ranges encrypted byte-exact.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use rustls::ProtocolVersion;
use zcopy_tls::{
    BodyError, Limits, PLAIN_HTTP_400, Session, TlsError, TlsOptions, send_file_chunk,
};

#[test]
fn handshake_every_key_type_and_version_with_alpn() {
    for alg in ALGS {
        let pki = Pki::new(alg);
        let l = pki.listener(&TlsOptions::default());
        for (versions, want) in [
            (TLS13, ProtocolVersion::TLSv1_3),
            (TLS12, ProtocolVersion::TLSv1_2),
        ] {
            let mut c = client(&pki.client_config(versions, H1), "localhost");
            let mut s = session(&l);
            assert!(s.is_handshaking());
            let mut seen = Seen::default();
            pump(&mut c, &mut s, &mut seen).unwrap_or_else(|e| panic!("{alg:?} {want:?}: {e}"));
            assert_eq!(seen.handshake_done, 1, "{alg:?} {want:?}");
            assert!(!s.is_handshaking() && !c.is_handshaking());
            assert_eq!(s.protocol_version(), Some(want));
            assert_eq!(s.alpn(), Some(&b"http/1.1"[..]));
            assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
            assert!(!s.resumed());
        }
    }
}

#[test]
fn client_without_alpn_is_served_and_h2_only_is_refused() {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&TlsOptions::default());
    let mut c = client(&pki.client_config(TLS13, &[]), "localhost");
    let mut s = session(&l);
    pump(&mut c, &mut s, &mut Seen::default()).unwrap();
    assert_eq!(s.alpn(), None);

    let mut c = client(&pki.client_config(TLS13, &[b"h2"]), "localhost");
    let mut s = session(&l);
    let e = pump(&mut c, &mut s, &mut Seen::default()).unwrap_err();
    assert!(e.contains("server"), "{e}");
    // The alert rustls queued reaches the client.
    let mut alert = Vec::new();
    while s.wants_write() {
        s.write_tls(&mut alert).unwrap();
    }
    c.read_tls(&mut &alert[..]).unwrap();
    let ce = c.process_new_packets().unwrap_err();
    assert!(ce.to_string().contains("NoApplicationProtocol"), "{ce}");
}

/// Wrong SNI and expired certificates: the server presents its one certificate
/// regardless; the client's own checks refuse it.
#[test]
fn wrong_name_and_expired_certificate_fail_at_the_client() {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&TlsOptions::default());
    let mut c = client(&pki.client_config(TLS13, H1), "example.org");
    let mut s = session(&l);
    let e = pump(&mut c, &mut s, &mut Seen::default()).unwrap_err();
    assert!(
        e.starts_with("client") && e.contains("not valid for name"),
        "{e}"
    );

    let old = Pki::with(Alg::EcdsaP256, |p| {
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    });
    let l = old.listener(&TlsOptions::default());
    let mut c = client(&old.client_config(TLS13, H1), "localhost");
    let mut s = session(&l);
    let e = pump(&mut c, &mut s, &mut Seen::default()).unwrap_err();
    assert!(e.starts_with("client") && e.contains("expired"), "{e}");
}

fn resumes(opts: &TlsOptions, versions: &[&'static rustls::SupportedProtocolVersion]) -> bool {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(opts);
    let cfg = pki.client_config(versions, H1);
    let mut last = false;
    for _ in 0..2 {
        let mut c = client(&cfg, "localhost");
        let mut s = session(&l);
        pump(&mut c, &mut s, &mut Seen::default()).unwrap();
        // A request/response so TLS 1.3 tickets reach the client.
        client_send(&mut c, b"ping");
        let mut seen = Seen::default();
        pump(&mut c, &mut s, &mut seen).unwrap();
        assert_eq!(seen.plaintext, b"ping");
        last = s.resumed();
        assert_eq!(
            c.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            last
        );
    }
    last
}

#[test]
fn sessions_resume_by_ticket_and_by_cache() {
    let tickets = TlsOptions::default();
    let cache_only = TlsOptions {
        tickets: false,
        ..TlsOptions::default()
    };
    let none = TlsOptions {
        tickets: false,
        session_cache: 0,
        ..TlsOptions::default()
    };
    for v in [TLS13, TLS12] {
        assert!(resumes(&tickets, v), "tickets {v:?}");
        assert!(resumes(&cache_only, v), "cache {v:?}");
        assert!(!resumes(&none, v), "neither {v:?}");
    }
}

#[test]
fn data_both_ways_and_close_notify() {
    let pki = Pki::new(Alg::Ed25519);
    let l = pki.listener(&TlsOptions::default());
    let mut c = client(&pki.client_config(TLS13, H1), "localhost");
    let mut s = session(&l);
    // The request rides with the client's Finished.
    let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    client_send(&mut c, req);
    let mut seen = Seen::default();
    pump(&mut c, &mut s, &mut seen).unwrap();
    assert_eq!(seen.plaintext, req);
    let body = pattern(200_000, 7);
    s.send(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
    s.send(&body).unwrap();
    pump(&mut c, &mut s, &mut seen).unwrap();
    let got = std::mem::take(&mut seen.client);
    assert_eq!(&got[..19], b"HTTP/1.1 200 OK\r\n\r\n");
    assert!(got[19..] == body[..], "body differs");

    // Idle between requests: buffers go, the session goes on.
    s.release_buffers();
    client_send(&mut c, b"GET /b HTTP/1.1\r\n\r\n");
    pump(&mut c, &mut s, &mut seen).unwrap();
    s.send(b"again").unwrap();
    pump(&mut c, &mut s, &mut seen).unwrap();
    assert_eq!(seen.client, b"again");
    seen.client.clear();

    // Server closes: the client sees a clean end.
    s.close_notify();
    pump(&mut c, &mut s, &mut seen).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(std::io::Read::read(&mut c.reader(), &mut buf).unwrap(), 0);
    // Client closes: the server is told.
    assert!(!seen.peer_closed);
    c.send_close_notify();
    pump(&mut c, &mut s, &mut seen).unwrap();
    assert!(seen.peer_closed);
}

#[test]
fn byte_at_a_time_feeding_works() {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&TlsOptions::default());
    let mut c = client(&pki.client_config(TLS12, H1), "localhost");
    let mut s = session(&l);
    let mut plain = Vec::new();
    let mut done = 0;
    for _ in 0..20 {
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        for b in out.chunks(1) {
            done += s.feed(b, &mut plain).unwrap().handshake_done as usize;
        }
        let mut back = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut back).unwrap();
        }
        c.read_tls(&mut &back[..]).unwrap();
        c.process_new_packets().unwrap();
        if !c.is_handshaking() && done == 1 {
            break;
        }
    }
    assert_eq!(done, 1);
    client_send(&mut c, b"hello");
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    for b in out.chunks(1) {
        s.feed(b, &mut plain).unwrap();
    }
    assert_eq!(plain, b"hello");
}

#[test]
fn plain_http_gets_the_400_and_garbage_is_refused() {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&TlsOptions::default());
    // Split across feeds: "GE" is not enough to tell.
    let mut s = session(&l);
    let mut p = Vec::new();
    assert_eq!(s.feed(b"GE", &mut p).unwrap(), Default::default());
    let e = s.feed(b"T / HTTP/1.1\r\n\r\n", &mut p).unwrap_err();
    assert!(matches!(e, TlsError::PlainHttp), "{e:?}");
    assert!(PLAIN_HTTP_400.starts_with(b"HTTP/1.1 400 "));
    assert!(
        !s.wants_write(),
        "nothing encrypted to send after plain HTTP"
    );
    assert!(p.is_empty());

    let mut s = session(&l);
    let e = s.feed(b"SSH-2.0-OpenSSH_9\r\n", &mut p).unwrap_err();
    assert!(matches!(e, TlsError::NotTls), "{e:?}");
    assert!(
        s.feed(b"more", &mut p).is_err(),
        "a failed session stays failed"
    );

    // A ClientHello full of junk: rustls refuses, with an alert to flush.
    let mut s = session(&l);
    let mut junk = vec![0x16, 3, 1, 0, 40, 1, 0, 0, 36];
    junk.extend([0xab; 36]);
    let e = s.feed(&junk, &mut p).unwrap_err();
    assert!(matches!(e, TlsError::Protocol(_)), "{e:?}");
    assert!(s.wants_write(), "a decode_error alert is queued");
    let mut alert = Vec::new();
    s.write_tls(&mut alert).unwrap();
    assert_eq!(alert[0], 21, "an alert record");
}

#[test]
fn handshake_deadline_is_set_until_the_handshake_ends() {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&TlsOptions::default());
    let now = Instant::now();
    let limits = Limits {
        handshake_timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let mut s = Session::new(&l.config, now, &limits).unwrap();
    assert_eq!(s.handshake_deadline(), Some(now + Duration::from_secs(3)));
    let mut c = client(&pki.client_config(TLS13, H1), "localhost");
    pump(&mut c, &mut s, &mut Seen::default()).unwrap();
    assert_eq!(s.handshake_deadline(), None);
}

#[test]
fn file_ranges_are_encrypted_byte_exact() {
    let (_pki, mut c, mut s) = handshaken(Alg::EcdsaP256, TLS13, &TlsOptions::default());

    let data = pattern(1_000_003, 42);
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&data).unwrap();
    let mut buf = Vec::new();
    let mut seen = Seen::default();
    for (start, len, chunk) in [
        (0u64, 0u64, 4096usize),
        (0, 1, 4096),
        (0, data.len() as u64, zcopy_tls::FILE_CHUNK),
        (4099, 70_001, 16_384),
        (999_000, 1_003, 100),
    ] {
        let mut off = start;
        let mut left = len;
        while left > 0 {
            let n = send_file_chunk(&mut s, &f, off, left, &mut buf, chunk).unwrap();
            assert!(n > 0 && n <= chunk);
            off += n as u64;
            left -= n as u64;
            pump(&mut c, &mut s, &mut seen).unwrap();
        }
        let got = std::mem::take(&mut seen.client);
        let want = &data[start as usize..(start + len) as usize];
        assert!(got == want, "range {start}+{len} differs");
    }
}

#[test]
fn a_file_that_shrank_is_an_error_and_sends_nothing() {
    let (_pki, mut c, mut s) = handshaken(Alg::EcdsaP256, TLS13, &TlsOptions::default());
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&pattern(10_000, 1)).unwrap();
    let mut buf = Vec::new();
    let mut seen = Seen::default();
    // The response promised 20 000 bytes; the file has 10 000.
    let n = send_file_chunk(&mut s, &f, 0, 20_000, &mut buf, 8192).unwrap();
    assert_eq!(n, 8192);
    pump(&mut c, &mut s, &mut seen).unwrap();
    let e = send_file_chunk(&mut s, &f, 8192, 20_000 - 8192, &mut buf, 8192).unwrap_err();
    assert!(
        matches!(
            e,
            BodyError::Shrank {
                at: 10_000,
                expected: 20_000
            }
        ),
        "{e:?}"
    );
    assert!(!s.wants_write(), "the short piece was not encrypted");
    pump(&mut c, &mut s, &mut seen).unwrap();
    assert_eq!(seen.client.len(), 8192);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Whatever arrives, in whatever pieces, the session answers with plaintext
    /// or an error, never a panic, and once failed it stays failed.
    #[test]
    fn any_bytes_in_any_pieces_never_panic(
        prefix in 0u8..3,
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        cut in 0usize..600,
    ) {
        static L: std::sync::OnceLock<(Pki, zcopy_tls::TlsListener)> = std::sync::OnceLock::new();
        let (pki, l) = L.get_or_init(|| {
            let pki = Pki::new(Alg::EcdsaP256);
            let l = pki.listener(&TlsOptions::default());
            (pki, l)
        });
        // Nothing, a record header, or a whole real ClientHello before the junk.
        let mut bytes = match prefix {
            0 => Vec::new(),
            1 => vec![0x16, 3, 1, 2, 0, 1],
            _ => {
                let mut c = client(&pki.client_config(TLS13, H1), "localhost");
                let mut hello = Vec::new();
                c.write_tls(&mut hello).unwrap();
                hello
            }
        };
        bytes.extend(body);
        let cut = cut.min(bytes.len());
        let mut s = session(l);
        let mut plain = Vec::new();
        let first = s.feed(&bytes[..cut], &mut plain);
        let second = s.feed(&bytes[cut..], &mut plain);
        if first.is_err() {
            proptest::prop_assert!(second.is_err());
        }
        proptest::prop_assert!(plain.is_empty(), "no plaintext without a handshake");
    }
}

#[test]
fn nothing_is_sent_after_close_notify() {
    let (_pki, mut c, mut s) = handshaken(Alg::EcdsaP256, TLS13, &TlsOptions::default());
    s.close_notify();
    let late = s.send(b"late bytes");
    let mut seen = Seen::default();
    pump(&mut c, &mut s, &mut seen).unwrap();
    assert!(seen.client.is_empty(), "{late:?} {:?}", seen.client);
}

#[test]
fn plaintext_sent_before_the_handshake_ends_arrives_after_it() {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&TlsOptions::default());
    for versions in [TLS13, TLS12] {
        let mut c = client(&pki.client_config(versions, H1), "localhost");
        let mut s = session(&l);
        s.send(b"early ").unwrap();
        assert!(!s.wants_write(), "nothing may leave before the handshake");
        let mut seen = Seen::default();
        pump(&mut c, &mut s, &mut seen).unwrap();
        s.send(b"late").unwrap();
        pump(&mut c, &mut s, &mut seen).unwrap();
        assert_eq!(seen.client, b"early late");
    }
}

/// The ciphertext taken whole (an io_uring SEND owns its buffer) reaches the
/// client byte-exact, whether or not its buffer comes back to the session; a
/// buffer given back while ciphertext is queued is not taken.
#[test]
fn ciphertext_taken_whole_and_buffers_recycled() {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&TlsOptions::default());
    let mut c = client(&pki.client_config(TLS13, H1), "localhost");
    let mut s = session(&l);
    pump(&mut c, &mut s, &mut Seen::default()).unwrap();
    let body = pattern(300_000, 3);
    let mut got = Vec::new();
    for (i, piece) in body.chunks(70_000).enumerate() {
        s.send(piece).unwrap();
        let mut sent = s.take_tls();
        assert!(!s.wants_write());
        let mut rd = &sent[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
            std::io::Read::read_to_end(&mut c.reader(), &mut got).ok();
        }
        if i % 2 == 0 {
            let cap = sent.capacity();
            s.recycle(&mut sent);
            assert!(
                sent.capacity() < cap,
                "an idle session keeps the larger buffer"
            );
        }
    }
    assert!(got == body, "body differs");
    // Queued ciphertext: the session keeps its own buffer.
    s.send(b"x").unwrap();
    let mut big = vec![0u8; 1 << 20];
    s.recycle(&mut big);
    assert_eq!(big.len(), 1 << 20);
    assert!(s.wants_write());
}
