//! Key and certificate material generated at test time with `rcgen`.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};

/// Server certificate for the TLS registry: a throw-away CA and a leaf
/// certificate signed by it, with SAN `IP:127.0.0.1` and `DNS:localhost`.
pub struct ServerTls {
    /// PEM of the CA certificate: the trust anchor a client needs.
    pub ca_pem: String,
    /// PEM of the leaf certificate the registry serves.
    pub cert_pem: String,
    /// PKCS#8 PEM of the leaf's private key.
    pub key_pem: String,
}

pub fn server_tls() -> ServerTls {
    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.distinguished_name = dn("regharness test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("generate leaf key");
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params");
    leaf_params.distinguished_name = dn("localhost");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("sign leaf certificate");

    ServerTls {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// Like [`server_tls`], but root CA → intermediate CA → leaf, with the intermediate
/// expiring on `not_after` (year, month, day); `cert_pem` holds the leaf and then the
/// intermediate, as a server sends its chain.
pub fn server_tls_with_intermediate(not_after: (i32, u8, u8)) -> ServerTls {
    let root_key = KeyPair::generate().expect("generate root key");
    let mut root_params = CertificateParams::new(Vec::<String>::new()).expect("root params");
    root_params.distinguished_name = dn("regharness root CA");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root_params.self_signed(&root_key).expect("self-sign root");
    let root = Issuer::new(root_params, root_key);

    let int_key = KeyPair::generate().expect("generate intermediate key");
    let mut int_params = CertificateParams::new(Vec::<String>::new()).expect("intermediate params");
    int_params.distinguished_name = dn("regharness intermediate CA");
    int_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    int_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    int_params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    int_params.use_authority_key_identifier_extension = true;
    let int_cert = int_params
        .signed_by(&int_key, &root)
        .expect("sign intermediate");
    let intermediate = Issuer::new(int_params, int_key);

    let leaf_key = KeyPair::generate().expect("generate leaf key");
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params");
    leaf_params.distinguished_name = dn("localhost");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &intermediate)
        .expect("sign leaf certificate");
    ServerTls {
        ca_pem: root_cert.pem(),
        cert_pem: format!("{}{}", leaf_cert.pem(), int_cert.pem()),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// A client CA and a client certificate it signed, for mutual TLS.
pub struct ClientTls {
    pub ca_pem: String,
    pub cert_pem: String,
    /// PKCS#8 PEM of the client's private key.
    pub key_pem: String,
}

pub fn client_tls() -> ClientTls {
    let ca_key = KeyPair::generate().expect("generate client CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("client CA params");
    ca_params.distinguished_name = dn("regharness client CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign client CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("generate client key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params.distinguished_name = dn("oci-registry-exporter test client");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, &issuer)
        .expect("sign client certificate");
    ClientTls {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// The token issuer's signing key (ECDSA P-256) and its self-signed
/// certificate, which doubles as the registry's `auth.token.rootcertbundle`.
pub struct SigningMaterial {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8 PEM of the private key.
    pub key_pem: String,
    /// DER SubjectPublicKeyInfo of the public key (input of the libtrust key id).
    pub spki_der: Vec<u8>,
}

pub fn signing_material() -> SigningMaterial {
    let key = KeyPair::generate().expect("generate token signing key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("signer params");
    params.distinguished_name = dn("regharness-token-signer");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).expect("self-sign token signer");
    SigningMaterial {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        spki_der: key.subject_public_key_info(),
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}
