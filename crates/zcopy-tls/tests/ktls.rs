//! kTLS secret extraction, checked without a kernel that has the tls ULP: records
//! are sealed and opened with the exact `crypto_info` structs the kernel would
//! get, the way its tls_sw code uses them, and a rustls client must accept them.

mod common;

use std::sync::Arc;

use common::*;
use ring::aead;
use rustls::{ClientConfig, RootCertStore};
use zcopy::ktls::{CryptoInfo, TrafficKeys, crypto_info};
use zcopy_tls::ktls::{TlsPath, connection_path};
use zcopy_tls::{Session, TlsOptions};

/// The kernel's view of one direction: algorithm, key, 12-byte nonce base
/// (salt || iv), next record sequence, TLS version.
struct Kernel {
    alg: &'static aead::Algorithm,
    key: Vec<u8>,
    salt: Vec<u8>,
    iv: Vec<u8>,
    seq: u64,
    tls13: bool,
}

impl Kernel {
    fn from(keys: &TrafficKeys) -> Kernel {
        let ci = crypto_info(keys);
        let (alg, version, key, salt, iv, rec_seq): (_, u16, Vec<u8>, Vec<u8>, Vec<u8>, [u8; 8]) =
            match ci {
                CryptoInfo::AesGcm128(i) => (
                    &aead::AES_128_GCM,
                    i.info.version,
                    i.key.to_vec(),
                    i.salt.to_vec(),
                    i.iv.to_vec(),
                    i.rec_seq,
                ),
                CryptoInfo::AesGcm256(i) => (
                    &aead::AES_256_GCM,
                    i.info.version,
                    i.key.to_vec(),
                    i.salt.to_vec(),
                    i.iv.to_vec(),
                    i.rec_seq,
                ),
                CryptoInfo::Chacha20Poly1305(i) => (
                    &aead::CHACHA20_POLY1305,
                    i.info.version,
                    i.key.to_vec(),
                    Vec::new(),
                    i.iv.to_vec(),
                    i.rec_seq,
                ),
            };
        Kernel {
            alg,
            key,
            salt,
            iv,
            seq: u64::from_be_bytes(rec_seq),
            tls13: version == 0x0304,
        }
    }

    fn aead(&self) -> aead::LessSafeKey {
        aead::LessSafeKey::new(aead::UnboundKey::new(self.alg, &self.key).unwrap())
    }

    /// (salt || iv) with the sequence XORed into its last 8 bytes (TLS 1.3 and
    /// ChaCha20 in TLS 1.2).
    fn xor_nonce(&self, seq: u64) -> aead::Nonce {
        let mut n = [0u8; 12];
        n[..self.salt.len()].copy_from_slice(&self.salt);
        n[self.salt.len()..].copy_from_slice(&self.iv);
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        aead::Nonce::assume_unique_for_key(n)
    }

    fn explicit_gcm12(&self) -> bool {
        !self.tls13 && self.salt.len() == 4
    }

    fn aad12(seq: u64, len: usize) -> Vec<u8> {
        let mut a = seq.to_be_bytes().to_vec();
        a.extend([23, 3, 3]);
        a.extend((len as u16).to_be_bytes());
        a
    }

    /// One application-data record, as the kernel's TLS_TX would send it.
    fn seal(&mut self, data: &[u8], nth: u64) -> Vec<u8> {
        self.seal_typed(23, data, nth)
    }

    /// One record of inner content type `inner` (TLS 1.3 hides it inside).
    fn seal_typed(&mut self, inner: u8, data: &[u8], nth: u64) -> Vec<u8> {
        let key = self.aead();
        let seq = self.seq;
        self.seq += 1;
        let mut body = data.to_vec();
        if self.tls13 {
            body.push(inner);
            let len = body.len() + 16;
            let header = [23, 3, 3, (len >> 8) as u8, len as u8];
            key.seal_in_place_append_tag(self.xor_nonce(seq), aead::Aad::from(header), &mut body)
                .unwrap();
            [header.to_vec(), body].concat()
        } else if self.explicit_gcm12() {
            // The explicit nonce: the crypto_info iv, counted up per record.
            let explicit =
                (u64::from_be_bytes(self.iv[..].try_into().unwrap()) + nth).to_be_bytes();
            let mut n = [0u8; 12];
            n[..4].copy_from_slice(&self.salt);
            n[4..].copy_from_slice(&explicit);
            let aad = Self::aad12(seq, data.len());
            key.seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(n),
                aead::Aad::from(aad),
                &mut body,
            )
            .unwrap();
            let len = 8 + body.len();
            [
                vec![23, 3, 3, (len >> 8) as u8, len as u8],
                explicit.to_vec(),
                body,
            ]
            .concat()
        } else {
            let aad = Self::aad12(seq, data.len());
            key.seal_in_place_append_tag(self.xor_nonce(seq), aead::Aad::from(aad), &mut body)
                .unwrap();
            let len = body.len();
            [vec![inner, 3, 3, (len >> 8) as u8, len as u8], body].concat()
        }
    }

    /// Open one application-data record, as the kernel's TLS_RX would.
    fn open(&mut self, record: &[u8]) -> Vec<u8> {
        let (inner, plain) = self.open_typed(record);
        assert_eq!(inner, 23, "application data");
        plain
    }

    /// Open one record: (content type, plaintext).
    fn open_typed(&mut self, record: &[u8]) -> (u8, Vec<u8>) {
        let key = self.aead();
        let seq = self.seq;
        self.seq += 1;
        let (header, rest) = record.split_at(5);
        if self.tls13 {
            assert_eq!(header[0], 23, "TLS 1.3 outer type");
            let mut body = rest.to_vec();
            let plain = key
                .open_in_place(self.xor_nonce(seq), aead::Aad::from(header), &mut body)
                .expect("rx keys open the client's record");
            let end = plain.iter().rposition(|&b| b != 0).unwrap();
            (plain[end], plain[..end].to_vec())
        } else if self.explicit_gcm12() {
            let (explicit, ct) = rest.split_at(8);
            let mut n = [0u8; 12];
            n[..4].copy_from_slice(&self.salt);
            n[4..].copy_from_slice(explicit);
            let mut body = ct.to_vec();
            let aad = Self::aad12(seq, ct.len() - 16);
            key.open_in_place(
                aead::Nonce::assume_unique_for_key(n),
                aead::Aad::from(aad),
                &mut body,
            )
            .expect("rx keys open the client's record");
            (header[0], body[..ct.len() - 16].to_vec())
        } else {
            let mut body = rest.to_vec();
            let aad = Self::aad12(seq, rest.len() - 16);
            key.open_in_place(self.xor_nonce(seq), aead::Aad::from(aad), &mut body)
                .expect("rx keys open the client's record");
            (header[0], body[..rest.len() - 16].to_vec())
        }
    }
}

/// Options of a listener whose sessions may go to the kernel.
const KTLS: TlsOptions = TlsOptions {
    session_cache: 4096,
    tickets: true,
    ktls: true,
    h2: false,
};

/// The suites the kernel and rustls (ring) both have, per version.
const TLS13_SUITES: [rustls::CipherSuite; 3] = [
    rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
];
const TLS12_SUITES: [rustls::CipherSuite; 3] = [
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

fn client_with_suite(pki: &Pki, suite: rustls::CipherSuite) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| s.suite() == suite);
    assert_eq!(provider.cipher_suites.len(), 1, "{suite:?}");
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

#[test]
fn extracted_keys_seal_and_open_records_the_client_agrees_with() {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&KTLS);
    for suite in TLS13_SUITES.into_iter().chain(TLS12_SUITES) {
        let mut c = client(&client_with_suite(&pki, suite), "localhost");
        let mut s: Session = session(&l);
        // Some user-space traffic first, so the sequence numbers are not trivial.
        client_send(&mut c, b"GET / HTTP/1.1\r\n\r\n");
        let mut seen = Seen::default();
        pump(&mut c, &mut s, &mut seen).unwrap();
        s.send(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        pump(&mut c, &mut s, &mut seen).unwrap();
        assert_eq!(seen.client, b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(s.cipher_suite().unwrap().suite(), suite);
        assert_eq!(
            connection_path(&TlsPath::Kernel, &s.facts()),
            TlsPath::Kernel,
            "{suite:?}"
        );

        let (tx, rx, _rest) = s.extract_keys().unwrap();
        assert!(
            tx.seq > 0,
            "{suite:?}: tickets/response were sent under these keys"
        );

        // Server → client under the kernel's TX keys.
        let mut k = Kernel::from(&tx);
        for (nth, msg) in [&b"first body bytes"[..], &pattern(16_000, 3)]
            .iter()
            .enumerate()
        {
            let rec = k.seal(msg, nth as u64);
            let mut rd = &rec[..];
            let mut got = Vec::new();
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets()
                    .unwrap_or_else(|e| panic!("{suite:?}: {e}"));
                got.extend(client_read(&mut c));
            }
            assert!(got == *msg, "{suite:?}: record {nth} decrypted differently");
        }

        // Client → server under the kernel's RX keys.
        let mut k = Kernel::from(&rx);
        for msg in [&b"GET /next HTTP/1.1\r\n\r\n"[..], b"second"] {
            client_send(&mut c, msg);
            let mut rec = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut rec).unwrap();
            }
            assert_eq!(k.open(&rec), msg, "{suite:?}");
        }
    }
}

#[test]
fn extraction_needs_the_ktls_option() {
    let (_pki, _c, s) = handshaken(Alg::EcdsaP256, TLS13, &TlsOptions::default());
    assert!(s.extract_keys().is_err());
}

/// Tickets still queued, or half a record read: the session stays in user space
/// for now and may be handed over after the next flush or feed.
#[test]
fn hand_off_waits_for_flushed_tickets_and_whole_records() {
    use zcopy_tls::ktls::Why;
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&KTLS);
    let mut c = client(&pki.client_config(TLS13, H1), "localhost");
    let mut s = session(&l);
    let mut plain = Vec::new();
    // Drive the handshake by hand and stop right after the server finishes.
    let mut done = false;
    while !done {
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        done = s.feed(&out, &mut plain).unwrap().handshake_done;
        if !done {
            let mut back = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut back).unwrap();
            }
            c.read_tls(&mut &back[..]).unwrap();
            c.process_new_packets().unwrap();
        }
    }
    let path = |s: &Session| connection_path(&TlsPath::Kernel, &s.facts());
    assert_eq!(
        path(&s),
        TlsPath::Userspace(Why::PendingWrite),
        "TLS 1.3 tickets queued"
    );
    let mut back = Vec::new();
    while s.wants_write() {
        s.write_tls(&mut back).unwrap();
    }
    assert_eq!(path(&s), TlsPath::Kernel);
    client_send(&mut c, b"GET / HTTP/1.1\r\n\r\n");
    let mut rec = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut rec).unwrap();
    }
    s.feed(&rec[..7], &mut plain).unwrap();
    assert_eq!(path(&s), TlsPath::Userspace(Why::MidRecord));
    s.feed(&rec[7..], &mut plain).unwrap();
    assert_eq!(path(&s), TlsPath::Kernel);
    assert_eq!(plain, b"GET / HTTP/1.1\r\n\r\n");
}

/// A TLS 1.3 KeyUpdate after the hand-off, from a client that asks us to update
/// too: the kernel's new receive keys open what the client sends next, our
/// KeyUpdate goes out under the old send keys, and the new send keys are the
/// ones the client expects afterwards.
#[test]
fn a_peer_key_update_is_followed_both_ways() {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&KTLS);
    for suite in TLS13_SUITES {
        let mut c = client(&client_with_suite(&pki, suite), "localhost");
        let mut s = session(&l);
        let mut seen = Seen::default();
        pump(&mut c, &mut s, &mut seen).unwrap();
        let (tx, rx, mut kernel) = s.extract_keys().unwrap();
        let (mut ktx, mut krx) = (Kernel::from(&tx), Kernel::from(&rx));

        // The client updates its keys and asks us to do the same.
        c.refresh_traffic_keys().unwrap();
        client_send(&mut c, b"after the update");
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        let first_len = 5 + u16::from_be_bytes([out[3], out[4]]) as usize;
        let (inner, message) = krx.open_typed(&out[..first_len]);
        assert_eq!(inner, 22, "{suite:?}: a handshake record");
        let update = kernel.key_update(&message).unwrap();
        let mut krx = Kernel::from(&update.rx);
        assert_eq!(
            krx.open(&out[first_len..]),
            b"after the update",
            "{suite:?}"
        );

        let (reply, new_tx) = update.tx.expect("the client asked for our update");
        let mut wire = ktx.seal_typed(22, reply, 0);
        ktx = Kernel::from(&new_tx);
        wire.extend(ktx.seal(b"sent under the new keys", 0));
        let mut rd = &wire[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets()
                .unwrap_or_else(|e| panic!("{suite:?}: {e}"));
        }
        assert_eq!(client_read(&mut c), b"sent under the new keys", "{suite:?}");
    }
}

#[test]
fn anything_but_a_key_update_after_the_hand_off_is_refused() {
    let pki = Pki::new(Alg::EcdsaP256);
    let l = pki.listener(&KTLS);
    let mut c = client(&pki.client_config(TLS13, H1), "localhost");
    let mut s = session(&l);
    pump(&mut c, &mut s, &mut Seen::default()).unwrap();
    let (_, _, mut kernel) = s.extract_keys().unwrap();
    for junk in [
        &[][..],
        &[24, 0, 0, 1, 7],
        &[4, 0, 0, 1, 0],
        &[24, 0, 0, 2, 0, 0],
    ] {
        assert!(kernel.key_update(junk).is_err(), "{junk:?}");
    }
}
