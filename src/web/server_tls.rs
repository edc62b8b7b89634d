//! The server side of TLS: the rustls `ServerConfig` built from `tls_server_config`
//! (certificate and key, versions, cipher suites, curves, ALPN) and the client-certificate
//! verifiers behind `client_auth_type` and `client_allowed_sans`.
//!
//! Reads the PEM files the web config names. Does not parse the web config file (`web_config`),
//! accept connections or time handshakes out (the server does, with [`HANDSHAKE_TIMEOUT`]),
//! or decide when to rebuild (`mod.rs`). Client TLS towards registries is `crate::registry_tls`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::{WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, ServerConfig};

use super::WebConfigError;
use super::web_config::{Ctx, RawTls, io_problem};
use crate::tls_signatures::signatures;

/// How long a client gets to complete the TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const CLIENT_AUTH_TYPES: &[&str] = &[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
];

fn tls_version(
    cx: &Ctx<'_>,
    key: &str,
    value: Option<&str>,
    default: u8,
) -> Result<u8, WebConfigError> {
    match value {
        None => Ok(default),
        Some("TLS10") => Ok(10),
        Some("TLS11") => Ok(11),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err(cx.invalid(
            format!("tls_server_config.{key}"),
            format!("unknown TLS version {other:?}"),
            "use TLS12 or TLS13",
        )),
    }
}

/// Reads a PEM file or takes the inline text; never shows the content.
fn pem_source(
    cx: &Ctx<'_>,
    inline_key: &str,
    inline: &Option<String>,
    file_key: &str,
    file: &Option<PathBuf>,
) -> Result<PemSource, WebConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(cx.invalid(
            format!("tls_server_config.{file_key}"),
            format!("both {inline_key} and {file_key} are set"),
            format!("keep one: {file_key} (a path) or {inline_key} (the PEM inline)"),
        )),
        (Some(text), None) => Ok(Some((text.as_bytes().to_vec(), format!("tls_server_config.{inline_key}")))),
        (None, Some(path)) => std::fs::read(path)
            .map(|bytes| Some((bytes, format!("tls_server_config.{file_key}"))))
            .map_err(|e| {
                cx.invalid(
                    format!("tls_server_config.{file_key}"),
                    format!("cannot read {} ({})", path.display(), io_problem(&e)),
                    "check the path (relative paths are relative to the web config file's directory) and its permissions",
                )
            }),
        (None, None) => Ok(None),
    }
}

fn certificates(
    cx: &Ctx<'_>,
    key: &str,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| {
            cx.invalid(
                key,
                "is not valid PEM",
                "use a PEM file with BEGIN CERTIFICATE blocks",
            )
        })?;
    if certs.is_empty() {
        return Err(cx.invalid(
            key,
            "holds no PEM certificate",
            "use a PEM file with BEGIN CERTIFICATE blocks",
        ));
    }
    Ok(certs)
}

/// The server's rustls configuration from `tls_server_config`, and its one-line summary
/// for the log. Each part checks its keys in turn (errors come in this order): the PEM
/// sources, the certificate and key, the versions, suites and curves, the client
/// certificates, then the whole.
pub(super) fn build_tls(
    cx: &Ctx<'_>,
    t: &RawTls,
    http2: bool,
) -> Result<(ServerConfig, String), WebConfigError> {
    let cert = pem_source(cx, "cert", &t.cert, "cert_file", &t.cert_file)?;
    let key = pem_source(cx, "key", &t.key, "key_file", &t.key_file)?;
    let client_ca = pem_source(
        cx,
        "client_ca",
        &t.client_ca,
        "client_ca_file",
        &t.client_ca_file,
    )?;
    let identity = identity(cx, cert, key)?;
    let (min, max, versions) = versions(cx, t)?;
    let mut provider = aws_lc_rs::default_provider();
    if let Some(names) = &t.cipher_suites {
        provider.cipher_suites = cipher_suites(cx, names)?;
    }
    if let Some(names) = &t.curve_preferences {
        provider.kx_groups = curves(cx, names)?;
    }
    let algorithms = provider.signature_verification_algorithms;
    let provider = Arc::new(provider);
    let auth_type = client_auth_type(cx, t)?;
    let verifier = client_verifier(cx, t, auth_type, client_ca, algorithms, &provider)?;
    let mut config = server_config(cx, provider, &versions, verifier, identity)?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let summary = format!(
        "TLS (TLS{}{}, client certificates: {auth_type})",
        if min <= 12 { "1.2" } else { "1.3" },
        if max >= 13 && min <= 12 { "-1.3" } else { "" },
    );
    Ok((config, summary))
}

/// The server's certificate chain and private key, with the keys they were read from
/// (for errors).
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    private_key: PrivateKeyDer<'static>,
    cert_key: String,
    key_key: String,
}

/// A PEM text and the key it came from, as [`pem_source`] reads it.
type PemSource = Option<(Vec<u8>, String)>;

fn identity(cx: &Ctx<'_>, cert: PemSource, key: PemSource) -> Result<Identity, WebConfigError> {
    let Some((cert_pem, cert_key)) = cert else {
        return Err(cx.invalid(
            "tls_server_config.cert_file",
            "missing: TLS is configured but there is no server certificate",
            "set cert_file to the server certificate (PEM), or cert to the PEM itself",
        ));
    };
    let Some((key_pem, key_key)) = key else {
        return Err(cx.invalid(
            "tls_server_config.key_file",
            "missing: TLS is configured but there is no private key",
            "set key_file to the server certificate's private key (PEM), or key to the PEM itself",
        ));
    };
    let chain = certificates(cx, &cert_key, &cert_pem)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        cx.invalid(
            &key_key,
            "holds no PEM private key",
            "use the PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) of the certificate",
        )
    })?;
    Ok(Identity {
        chain,
        private_key,
        cert_key,
        key_key,
    })
}

/// `min_version` and `max_version` (12 or 13 here: rustls speaks TLS 1.2 and 1.3 only),
/// and the protocol versions they allow.
fn versions(
    cx: &Ctx<'_>,
    t: &RawTls,
) -> Result<(u8, u8, Vec<&'static rustls::SupportedProtocolVersion>), WebConfigError> {
    let min = tls_version(cx, "min_version", t.min_version.as_deref(), 12)?;
    let max = tls_version(cx, "max_version", t.max_version.as_deref(), 13)?;
    if max < 12 {
        return Err(cx.invalid(
            "tls_server_config.max_version",
            "TLS 1.0 and 1.1 are not supported",
            "use TLS12 or TLS13",
        ));
    }
    if min > max {
        return Err(cx.invalid(
            "tls_server_config.min_version",
            "is above max_version",
            "set min_version at or below max_version",
        ));
    }
    if min < 12 {
        tracing::warn!(
            path = %cx.path.display(),
            "tls_server_config.min_version TLS10/TLS11 means TLS12 here: TLS 1.0 and 1.1 are not supported"
        );
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if min <= 12 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        versions.push(&rustls::version::TLS13);
    }
    Ok((min, max, versions))
}

/// `client_auth_type`, one of [`CLIENT_AUTH_TYPES`] (exporter-toolkit's old name
/// `RequireClientCert` taken as `RequireAnyClientCert`).
fn client_auth_type<'t>(cx: &Ctx<'_>, t: &'t RawTls) -> Result<&'t str, WebConfigError> {
    let auth_type = match t.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "RequireClientCert" => "RequireAnyClientCert",
        other => other,
    };
    if !CLIENT_AUTH_TYPES.contains(&auth_type) {
        return Err(cx.invalid(
            "tls_server_config.client_auth_type",
            format!("unknown client auth type {auth_type:?}"),
            format!("use one of {}", CLIENT_AUTH_TYPES.join(", ")),
        ));
    }
    Ok(auth_type)
}

/// The client CA's certificates as roots, if one is configured.
fn client_roots(
    cx: &Ctx<'_>,
    client_ca: &PemSource,
) -> Result<Option<Arc<RootCertStore>>, WebConfigError> {
    let Some((pem, key)) = client_ca else {
        return Ok(None);
    };
    let mut store = RootCertStore::empty();
    for c in certificates(cx, key, pem)? {
        store.add(c).map_err(|_| {
            cx.invalid(
                key,
                "holds a certificate that is not a valid CA certificate",
                "use the PEM of the CA that signs the client certificates",
            )
        })?;
    }
    Ok(Some(Arc::new(store)))
}

/// The client-certificate verifier `auth_type` asks for (`None`: no client certificate),
/// restricted to `client_allowed_sans` where that is set.
fn client_verifier(
    cx: &Ctx<'_>,
    t: &RawTls,
    auth_type: &str,
    client_ca: PemSource,
    algorithms: WebPkiSupportedAlgorithms,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, WebConfigError> {
    let roots = client_roots(cx, &client_ca)?;
    if roots.is_some() && auth_type == "NoClientCert" {
        return Err(cx.invalid(
            "tls_server_config.client_auth_type",
            "a client CA is configured but client_auth_type is NoClientCert (the default)",
            "set client_auth_type, e.g. RequireAndVerifyClientCert, or remove client_ca_file",
        ));
    }
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match auth_type {
        "NoClientCert" => None,
        "RequestClientCert" | "RequireAnyClientCert" => Some(Arc::new(AnyClientCert {
            mandatory: auth_type == "RequireAnyClientCert",
            algorithms,
        })),
        _ => {
            let Some(roots) = roots else {
                return Err(cx.invalid(
                    "tls_server_config.client_ca_file",
                    format!("missing: client_auth_type {auth_type} verifies client certificates against a CA"),
                    "set client_ca_file to the PEM of the CA that signs the client certificates",
                ));
            };
            let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            if auth_type == "VerifyClientCertIfGiven" {
                builder = builder.allow_unauthenticated();
            }
            Some(builder.build().map_err(|e| {
                cx.invalid(
                    "tls_server_config.client_ca_file",
                    format!("cannot be used to verify client certificates ({e})"),
                    "use the PEM of the CA that signs the client certificates",
                )
            })?)
        }
    };
    match (&t.client_allowed_sans, verifier) {
        (Some(sans), Some(inner))
            if matches!(
                auth_type,
                "RequireAnyClientCert" | "RequireAndVerifyClientCert"
            ) =>
        {
            Ok(Some(Arc::new(AllowedSans {
                inner,
                allowed: sans.clone(),
            })))
        }
        (Some(_), _) => Err(cx.invalid(
            "tls_server_config.client_allowed_sans",
            format!("has no effect with client_auth_type {auth_type}"),
            "set client_auth_type to RequireAnyClientCert or RequireAndVerifyClientCert",
        )),
        (None, v) => Ok(v),
    }
}

/// The `ServerConfig` of the parts: versions, client verifier, certificate and key.
fn server_config(
    cx: &Ctx<'_>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    identity: Identity,
) -> Result<ServerConfig, WebConfigError> {
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| {
            cx.invalid(
                "tls_server_config",
                format!("no usable TLS setup ({e})"),
                "check min_version, max_version, cipher_suites and curve_preferences together",
            )
        })?;
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v),
    };
    let Identity {
        chain,
        private_key,
        cert_key,
        key_key,
    } = identity;
    builder
        .with_single_cert(chain, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => cx.invalid(
                &key_key,
                format!("does not match the certificate in {cert_key}"),
                "use the private key the certificate was issued for",
            ),
            other => cx.invalid(
                &key_key,
                format!("cannot be used with the certificate ({other})"),
                "use a PEM certificate and its PEM private key (RSA, ECDSA or Ed25519)",
            ),
        })
}

/// Go's TLS 1.3 suite names: accepted and ignored, as in Go (TLS 1.3 suites are fixed).
const GO_TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

fn cipher_suites(
    cx: &Ctx<'_>,
    names: &[String],
) -> Result<Vec<rustls::SupportedCipherSuite>, WebConfigError> {
    let all = aws_lc_rs::ALL_CIPHER_SUITES;
    let tls12_names = || {
        all.iter()
            .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls12(_)))
            .map(|s| format!("{:?}", s.suite()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // TLS 1.3 suites stay as the provider has them.
    let mut out: Vec<_> = aws_lc_rs::default_provider()
        .cipher_suites
        .into_iter()
        .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)))
        .collect();
    for name in names {
        if GO_TLS13_SUITES.contains(&name.as_str()) {
            continue;
        }
        let Some(suite) = all.iter().find(|s| {
            matches!(s, rustls::SupportedCipherSuite::Tls12(_))
                && format!("{:?}", s.suite()) == *name
        }) else {
            return Err(cx.invalid(
                "tls_server_config.cipher_suites",
                format!("cipher suite {name:?} is not supported"),
                format!("use TLS 1.2 suites from: {}", tls12_names()),
            ));
        };
        if !out.contains(suite) {
            out.push(*suite);
        }
    }
    Ok(out)
}

fn curves(
    cx: &Ctx<'_>,
    names: &[String],
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, WebConfigError> {
    use aws_lc_rs::kx_group;
    names
        .iter()
        .map(|name| match name.as_str() {
            "X25519" => Ok(kx_group::X25519),
            "CurveP256" => Ok(kx_group::SECP256R1),
            "CurveP384" => Ok(kx_group::SECP384R1),
            "X25519MLKEM768" => Ok(kx_group::X25519MLKEM768),
            other => Err(cx.invalid(
                "tls_server_config.curve_preferences",
                format!("curve {other:?} is not supported"),
                "use X25519, CurveP256, CurveP384 or X25519MLKEM768",
            )),
        })
        .collect()
}

/// `RequestClientCert` and `RequireAnyClientCert`: a client certificate is asked for (and
/// required by the second) but not verified against a CA; its handshake signature is.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    signatures!(algorithms: algorithms);
}

/// `client_allowed_sans`: the client certificate must carry one of these SANs (DNS name,
/// email, IP address or URI), after the inner verifier accepted it.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = subject_alt_names(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        if sans.iter().any(|s| self.allowed.contains(s)) {
            Ok(verified)
        } else {
            tracing::debug!(found = ?sans, "client certificate has none of client_allowed_sans");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    signatures!(inner);
}

/// DNS names, emails, IP addresses and URIs of a certificate, as Go writes them.
fn subject_alt_names(der: &CertificateDer<'_>) -> Option<Vec<String>> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let Some(ext) = cert.subject_alternative_name().ok()? else {
        return Some(Vec::new());
    };
    Some(
        ext.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some(s.to_string())
                }
                GeneralName::IPAddress(b) => match b.len() {
                    4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                    16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
    )
}
