//! The registry client's side of TLS (the web server's is `web::server_tls`): trust
//! (platform roots plus `ca_file`, or none with `insecure_skip_verify`), the client
//! certificate, and the earliest `notAfter` of every verified chain, which reqwest alone
//! does not expose (it hands back the leaf only).
//!
//! Owns building the rustls `ClientConfig` reqwest uses, and [`ChainExpiry`], a verifier
//! that wraps the real one and records the earliest expiry among the leaf and the
//! intermediates the server sent, keyed by that leaf ([`ChainExpiries`]): one client, and
//! so one verifier, serves all registries with the same TLS settings, on any host and
//! port, and the response tells which leaf its connection presented. It does not decide
//! what an expiry means: the client attaches it to the result and `metrics` exports it.
//!
//! Between the two sits [`ListedCertificate`]: a server certificate that is itself in
//! `ca_file` (byte for byte) is trusted even when it is a CA certificate, as Go clients,
//! curl and skopeo trust the `openssl req -x509` certificate of Docker's registry docs,
//! which webpki refuses as `CaUsedAsEndEntity` (rustls/webpki#205). Its names and dates
//! are still checked; everything else goes through the platform verifier.
//!
//! [`describe_error`] turns a rustls failure into plain words that name the fix, for the
//! messages of the `tls` reason (the client classifies; this module knows rustls).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig};

use crate::config::TlsSettings;
use crate::tls_signatures::signatures;

/// Why the TLS settings could not be turned into a client configuration. Names files,
/// never their content.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("{0}")]
    Rustls(String),
}

/// The earliest `notAfter` of the chains verified so far, per leaf certificate.
///
/// Keyed by the certificate the server presented, not by its name: one HTTP client serves
/// every registry with the same TLS settings, two registries on one host (different ports)
/// may present different certificates, and rustls's verifier is told the server name only.
/// The response knows which leaf its connection presented (reqwest's `TlsInfo`), so the
/// client looks its chain up by that, whatever the host, port or redirect. A resumed TLS
/// session presents the leaf of the session it resumes without a new verification, so
/// entries are not dropped by age: at most `capacity` are kept, and the least recently used
/// goes first.
#[derive(Debug)]
pub struct ChainExpiries(Mutex<Seen>);

#[derive(Debug)]
struct Seen {
    /// SHA-256 of the leaf's DER → (earliest expiry of its chain, last use).
    chains: HashMap<[u8; 32], (SystemTime, u64)>,
    /// A counter, not a clock: orders the uses for eviction.
    uses: u64,
    capacity: usize,
}

impl Seen {
    fn touch(&mut self) -> u64 {
        self.uses += 1;
        self.uses
    }
}

fn leaf_key(der: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(der).into()
}

impl ChainExpiries {
    /// A recorder that keeps the chains of at most `capacity` leaf certificates.
    pub fn new(capacity: usize) -> ChainExpiries {
        ChainExpiries(Mutex::new(Seen {
            chains: HashMap::new(),
            uses: 0,
            capacity: capacity.max(1),
        }))
    }

    // std Mutex: held only to read or insert, never across an .await.
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The earliest expiry of the chain verified with the leaf certificate `leaf` (DER).
    pub fn get(&self, leaf: &[u8]) -> Option<SystemTime> {
        let key = leaf_key(leaf);
        let mut seen = self.seen();
        let used = seen.touch();
        let (expiry, last) = seen.chains.get_mut(&key)?;
        *last = used;
        Some(*expiry)
    }

    fn put(&self, leaf: &[u8], expiry: SystemTime) {
        let key = leaf_key(leaf);
        let mut seen = self.seen();
        let used = seen.touch();
        seen.chains.insert(key, (expiry, used));
        if seen.chains.len() > seen.capacity {
            let oldest = seen
                .chains
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                seen.chains.remove(&oldest);
            }
        }
    }

    /// How many chains are kept.
    pub fn len(&self) -> usize {
        self.seen().chains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A verifier that asks the real one, then notes the chain's earliest expiry by its leaf.
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
            self.seen.put(end_entity.as_ref(), earliest);
        }
        Ok(verified)
    }

    signatures!(inner);
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

    signatures!(inner);
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

    signatures!(algorithms: 0);
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

/// The rustls configuration for the client of the registries with the settings `tls`, and
/// where it records expiries: the chains of at most `chains` leaf certificates (see
/// [`ChainExpiries`]; a few per registry that uses it are plenty).
pub fn client_config(
    tls: &TlsSettings,
    chains: usize,
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
    let seen = Arc::new(ChainExpiries::new(chains));
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

/// Plain words for the TLS failure in `err`'s source chain, naming the fix, or `None` when
/// the chain holds no rustls error. For the messages of the `tls` reason: rustls's own
/// texts are enum names ("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))").
pub fn describe_error(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(describe_rustls(tls));
        }
        // tokio-rustls hands rustls errors over inside an io::Error, and io::Error's
        // `source()` skips the error it wraps (it returns that error's source).
        if let Some(found) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| describe_error(inner))
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

fn describe_rustls(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, Error as E, InvalidMessage};
    match e {
        E::InvalidCertificate(c) => describe_certificate(c),
        // A plain HTTP answer ("HTTP/1.1 400 ...") starts with a byte that is no TLS record
        // type, which rustls reports as a corrupt message of an invalid content type.
        E::InvalidMessage(InvalidMessage::InvalidContentType) => {
            "the port speaks plain HTTP, not TLS; use http:// in url".into()
        }
        E::InvalidMessage(_) => {
            "the server's answer is not valid TLS; check that url names the registry's TLS port"
                .into()
        }
        E::AlertReceived(Alert::CertificateRequired) => {
            "the registry requires a client certificate; set client_cert_file and client_key_file"
                .into()
        }
        // Received, not sent: the registry refuses the certificate the exporter presented
        // (or the lack of one: TLS 1.2 servers say bad_certificate for that too).
        E::AlertReceived(
            Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::AccessDenied,
        ) => "the registry refused the exporter's client certificate, or the lack of one; \
              set client_cert_file and client_key_file to a certificate the registry trusts"
            .into(),
        E::AlertReceived(Alert::ProtocolVersion | Alert::HandshakeFailure)
        | E::PeerIncompatible(_) => "the registry and the exporter share no TLS version or \
                                     cipher suite; the exporter speaks TLS 1.2 and 1.3"
            .into(),
        E::AlertReceived(alert) => format!(
            "the registry ended the TLS handshake with the alert \"{}\"",
            words(&format!("{alert:?}"))
        ),
        E::NoCertificatesPresented => "the registry presented no certificate".into(),
        other => format!("the TLS handshake failed: {other}"),
    }
}

fn describe_certificate(c: &CertificateError) -> String {
    let date = |t: &UnixTime| {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t.as_secs()))
    };
    match c {
        CertificateError::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            "the certificate is a CA certificate used as a server certificate; put this exact \
             certificate in ca_file, or issue a server certificate signed by that CA"
                .into()
        }
        CertificateError::UnknownIssuer => "the certificate is signed by an authority the \
                                            exporter does not trust; set ca_file to the CA's \
                                            PEM bundle"
            .into(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!(
                "the certificate has expired (valid until {})",
                date(not_after)
            )
        }
        CertificateError::Expired => "the certificate has expired".into(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "the certificate is not valid yet (valid from {}); check the clocks of the \
             exporter and the registry",
            date(not_before)
        ),
        CertificateError::NotValidYet => "the certificate is not valid yet; check the clocks \
                                          of the exporter and the registry"
            .into(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let host = expected.to_str();
            let names: Vec<&str> = presented.iter().map(|p| general_name(p)).collect();
            let names = if names.is_empty() {
                "no host at all".to_string()
            } else {
                names.join(", ")
            };
            format!(
                "the certificate does not name {host} (it names {names}); use one of those \
                 names in url, or reissue the certificate with {host} as a subject \
                 alternative name"
            )
        }
        CertificateError::NotValidForName => "the certificate does not name the host in url; \
                                              use a name the certificate lists in url"
            .into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the certificate is not issued for server authentication (its extended key usage \
             leaves out serverAuth)"
                .into()
        }
        CertificateError::Revoked => "the certificate has been revoked".into(),
        CertificateError::BadSignature => "the certificate's signature is invalid".into(),
        CertificateError::BadEncoding => "the certificate is malformed".into(),
        other => format!("the certificate was refused: {other}"),
    }
}

/// `DnsName("registry.example.com")` or `IpAddress(10.0.0.1)`, as webpki lists the names a
/// certificate presents, to the bare name.
fn general_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

/// `CertificateRequired` to `certificate required`.
fn words(camel: &str) -> String {
    let mut out = String::new();
    for ch in camel.chars() {
        if ch.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    /// (year, month, day)
    type Date = (i32, u8, u8);

    /// A self-signed certificate for `names`, `CA:TRUE` like `openssl req -x509` makes,
    /// valid between `dates` (rcgen's default span when None).
    fn self_signed_ca(names: &[&str], dates: Option<(Date, Date)>) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        if let Some(((y0, m0, d0), (y1, m1, d1))) = dates {
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn platform(extra: &[&[u8]]) -> Arc<dyn ServerCertVerifier> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let extra = extra
            .iter()
            .map(|c| CertificateDer::from(c.to_vec()))
            .collect();
        shared_verifier(extra, &provider).unwrap()
    }

    fn listed(certs: &[&[u8]]) -> ListedCertificate {
        ListedCertificate {
            inner: platform(certs),
            listed: certs
                .iter()
                .map(|c| CertificateDer::from(c.to_vec()))
                .collect(),
        }
    }

    fn verify(v: &dyn ServerCertVerifier, cert: &[u8], host: &str) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(host.to_string()).unwrap();
        v.verify_server_cert(
            &CertificateDer::from(cert.to_vec()),
            &[],
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
    }

    fn describe(e: rustls::Error) -> String {
        // As reqwest hands it over: inside an io::Error, inside another error.
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Outer(#[source] std::io::Error);
        let outer = Outer(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        describe_error(&outer).expect("a rustls error is found")
    }

    #[test]
    fn a_listed_self_signed_ca_certificate_is_trusted_for_its_names_only() {
        let cert = self_signed_ca(&["127.0.0.1", "localhost"], None);
        let v = listed(&[&cert]);
        verify(&v, &cert, "127.0.0.1").unwrap();
        verify(&v, &cert, "localhost").unwrap();
        let e = verify(&v, &cert, "registry.example.com").unwrap_err();
        assert_eq!(
            describe(e),
            "the certificate does not name registry.example.com (it names 127.0.0.1, \
             localhost); use one of those names in url, or reissue the certificate with \
             registry.example.com as a subject alternative name"
        );
    }

    #[test]
    fn a_listed_certificate_outside_its_dates_is_refused() {
        let expired = self_signed_ca(&["127.0.0.1"], Some(((2020, 1, 1), (2021, 1, 1))));
        let e = verify(&listed(&[&expired]), &expired, "127.0.0.1").unwrap_err();
        assert_eq!(
            describe(e),
            "the certificate has expired (valid until 2021-01-01T00:00:00Z)"
        );
        let future = self_signed_ca(&["127.0.0.1"], Some(((2999, 1, 1), (3000, 1, 1))));
        let e = check_listed(
            &CertificateDer::from(future),
            &ServerName::try_from("127.0.0.1").unwrap(),
            UnixTime::now(),
        )
        .unwrap_err();
        assert!(
            describe(e).starts_with("the certificate is not valid yet (valid from 2999-01-01"),
            "not yet valid"
        );
    }

    #[test]
    fn an_unlisted_ca_certificate_gets_the_platform_verifiers_answer_in_words() {
        let served = self_signed_ca(&["127.0.0.1"], None);
        let other = self_signed_ca(&["127.0.0.1"], None);
        // The real webpki error, through the real verifier: proves the typed match holds
        // for the webpki version rustls uses.
        let e = verify(&listed(&[&other]), &served, "127.0.0.1").unwrap_err();
        assert_eq!(
            describe(e),
            "the certificate is a CA certificate used as a server certificate; put this exact \
             certificate in ca_file, or issue a server certificate signed by that CA"
        );
    }

    #[test]
    fn a_leaf_signed_by_an_unknown_authority_is_described() {
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let e = verify(&*platform(&[]), leaf.der(), "127.0.0.1").unwrap_err();
        assert_eq!(
            describe(e),
            "the certificate is signed by an authority the exporter does not trust; set \
             ca_file to the CA's PEM bundle"
        );
    }

    #[test]
    fn plain_http_and_alerts_are_described() {
        use rustls::{AlertDescription, InvalidMessage};
        assert_eq!(
            describe(rustls::Error::InvalidMessage(
                InvalidMessage::InvalidContentType
            )),
            "the port speaks plain HTTP, not TLS; use http:// in url"
        );
        assert_eq!(
            describe(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            )),
            "the registry requires a client certificate; set client_cert_file and \
             client_key_file"
        );
        assert_eq!(
            describe(rustls::Error::AlertReceived(
                AlertDescription::UnrecognisedName
            )),
            "the registry ended the TLS handshake with the alert \"unrecognised name\""
        );
        // Directly, not only inside an io::Error.
        assert_eq!(
            describe_error(&rustls::Error::InvalidCertificate(
                CertificateError::Expired
            ))
            .as_deref(),
            Some("the certificate has expired")
        );
    }

    #[test]
    fn descriptions_are_lowercase_without_a_trailing_period() {
        let errors = [
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            rustls::Error::InvalidCertificate(CertificateError::BadSignature),
            rustls::Error::InvalidMessage(rustls::InvalidMessage::MessageTooLarge),
            rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
            rustls::Error::NoCertificatesPresented,
        ];
        for e in errors {
            let text = describe(e);
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
            assert!(!text.ends_with('.'), "{text}");
        }
    }

    #[test]
    fn errors_without_rustls_are_not_described() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(describe_error(&io), None);
    }

    #[test]
    fn chain_expiries_keep_the_most_recently_used_leaves() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        let seen = ChainExpiries::new(2);
        seen.put(b"leaf a", at(1));
        seen.put(b"leaf b", at(2));
        // A resumed session looks its leaf up without a new verification: that is a use.
        assert_eq!(seen.get(b"leaf a"), Some(at(1)));
        seen.put(b"leaf c", at(3));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen.get(b"leaf b"), None, "the least recently used went");
        assert_eq!(seen.get(b"leaf a"), Some(at(1)));
        assert_eq!(seen.get(b"leaf c"), Some(at(3)));
        // A new handshake with the same leaf records its chain again.
        seen.put(b"leaf a", at(4));
        assert_eq!(seen.get(b"leaf a"), Some(at(4)));
    }
}
