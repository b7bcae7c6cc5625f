//! A test CA and a leaf it signed for "localhost" and 127.0.0.1 (rcgen), shared by
//! the TLS tests of several crates (included with `#[path]`).

use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, Issuer, KeyPair};

/// A fresh ECDSA P-256 CA, and a leaf for `leaf_key` it signed (`tweak` may change
/// the leaf's names or validity first).
pub fn ca_and_leaf(
    leaf_key: &KeyPair,
    tweak: impl FnOnce(&mut CertificateParams),
) -> (Certificate, Certificate) {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "zcopy test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    tweak(&mut leaf_params);
    let leaf = leaf_params.signed_by(leaf_key, &issuer).unwrap();
    (ca, leaf)
}

/// A rustls client (ring) trusting only `ca`, limited to `versions`, offering `alpn`.
pub fn client_config(
    ca: &rustls::pki_types::CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    std::sync::Arc::new(c)
}
