//! The client side of TLS: trust (platform roots plus `ca_file`, or none with
//! `insecure_skip_verify`), the client certificate, and the earliest `notAfter` of every
//! verified chain, which reqwest alone does not expose (it hands back the leaf only).
//!
//! Owns building the rustls `ClientConfig` reqwest uses, and [`ChainExpiry`], a verifier
//! that wraps the real one and records, per server name, the earliest expiry among the
//! leaf and the intermediates the server sent. It does not decide what an expiry means:
//! the client attaches it to the result and `metrics` exports it.
//!
//! Between the two sits [`ListedCertificate`]: a server certificate that is itself in
//! `ca_file` (byte for byte) is trusted even when it is a CA certificate, as Go clients,
//! curl and skopeo trust the `openssl req -x509` certificate of Docker's registry docs,
//! which webpki refuses as `CaUsedAsEndEntity` (rustls/webpki#205). Its names and dates
//! are still checked; everything else goes through the platform verifier.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::config::TlsSettings;

/// Why the TLS settings could not be turned into a client configuration. Names files,
/// never their content.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("{0}")]
    Rustls(String),
}

/// The earliest `notAfter` of the chains verified so far, per server name.
#[derive(Debug, Default)]
pub struct ChainExpiries(Mutex<HashMap<String, SystemTime>>);

impl ChainExpiries {
    /// The earliest expiry of the chain `host` presented on its latest handshake.
    pub fn get(&self, host: &str) -> Option<SystemTime> {
        // std Mutex: held only to read or insert, never across an .await.
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .copied()
    }

    fn put(&self, host: String, expiry: SystemTime) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host, expiry);
    }
}

/// A verifier that asks the real one, then notes the chain's earliest expiry.
#[derive(Debug)]
struct ChainExpiry {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Arc<ChainExpiries>,
}

fn not_after(der: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

impl ServerCertVerifier for ChainExpiry {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let earliest = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(not_after)
            .min();
        if let Some(earliest) = earliest {
            self.seen.put(server_name.to_str().into_owned(), earliest);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Trusts a presented certificate that is exactly one of the `ca_file` certificates when
/// the platform verifier refuses it: the user pinned that very certificate, so the chain
/// question is answered, and what remains to check is that it names the server and is
/// within its dates. Any other certificate, and any certificate the platform verifier
/// accepts, gets the platform verifier's answer unchanged.
#[derive(Debug)]
struct ListedCertificate {
    inner: Arc<dyn ServerCertVerifier>,
    listed: Vec<CertificateDer<'static>>,
}

/// A `notBefore`/`notAfter` as a `UnixTime`; dates before 1970 count as 1970.
fn unix_time(t: x509_parser::time::ASN1Time) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(t.timestamp()).unwrap_or(0),
    ))
}

/// Checks the names and dates of a certificate whose trust is already settled.
fn check_listed(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    // rustls/webpki's own name matching (SANs only, IP addresses as iPAddress entries).
    rustls::client::verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let validity = cert.validity();
    let (not_before, not_after) = (
        unix_time(validity.not_before),
        unix_time(validity.not_after),
    );
    if now.as_secs() < not_before.as_secs() {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before,
        }
        .into());
    }
    if now.as_secs() > not_after.as_secs() {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after,
        }
        .into());
    }
    Ok(())
}

impl ServerCertVerifier for ListedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(e) => e,
        };
        if !self
            .listed
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Err(refused);
        }
        check_listed(end_entity, server_name, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake signatures are
/// still checked, so the connection is at least to the holder of the presented key.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| TlsSetupError::File {
        path: path.display().to_string(),
        problem: e.kind().to_string(),
    })
}

/// Platform verifiers by their extra roots. Building one reads and parses every system CA
/// (about 19 M instructions and 110 KiB each, measured in docs/benchmarks.md), so registries
/// with the same trust share one instead of each paying for it. Keyed by the roots' bytes,
/// so a `ca_file` changed before a reload gets a verifier of its own.
type VerifierCache = Mutex<HashMap<Vec<Vec<u8>>, Arc<dyn ServerCertVerifier>>>;

fn shared_verifier(
    extra: Vec<CertificateDer<'static>>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsSetupError> {
    static CACHE: std::sync::OnceLock<VerifierCache> = std::sync::OnceLock::new();
    let key: Vec<Vec<u8>> = extra.iter().map(|c| c.as_ref().to_vec()).collect();
    let cache = CACHE.get_or_init(Default::default);
    // std Mutex: held while building at most one verifier, never across an .await.
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = cache.get(&key) {
        return Ok(v.clone());
    }
    let verifier: Arc<dyn ServerCertVerifier> = Arc::new(
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?,
    );
    cache.insert(key, verifier.clone());
    Ok(verifier)
}

/// The rustls configuration for one registry's client, and where it records expiries.
pub fn client_config(
    tls: &TlsSettings,
) -> Result<(ClientConfig, Arc<ChainExpiries>), TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let rustls_err = |e: rustls::Error| TlsSetupError::Rustls(e.to_string());
    let inner: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(AcceptAnyCertificate(
            provider.signature_verification_algorithms,
        ))
    } else {
        let mut extra = Vec::new();
        if let Some(path) = &tls.ca_file {
            let pem = read(path)?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                extra.push(cert.map_err(|_| TlsSetupError::File {
                    path: path.display().to_string(),
                    problem: "not a PEM certificate bundle".into(),
                })?);
            }
        }
        let platform = shared_verifier(extra.clone(), &provider)?;
        if extra.is_empty() {
            platform
        } else {
            Arc::new(ListedCertificate {
                inner: platform,
                listed: extra,
            })
        }
    };
    let seen = Arc::new(ChainExpiries::default());
    let verifier = Arc::new(ChainExpiry {
        inner,
        seen: seen.clone(),
    });
    let builder = ClientConfig::builder_with_provider(provider.clone() as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let cert_pem = read(cert)?;
            let key_pem = read(key)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|_| TlsSetupError::File {
                    path: cert.display().to_string(),
                    problem: "not a PEM certificate".into(),
                })?;
            let key_der =
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsSetupError::File {
                    path: key.display().to_string(),
                    problem: "not a PEM private key".into(),
                })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(rustls_err)?
        }
    };
    // reqwest negotiates HTTP/2 through ALPN only when the configuration offers it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, seen))
}
