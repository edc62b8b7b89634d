//! The signature half of a rustls certificate verifier, written once for the verifiers of
//! the registry client (`registry_tls`) and of the web server (`web::server_tls`).
//!
//! rustls' `ServerCertVerifier` and `ClientCertVerifier` declare the same three methods
//! (`verify_tls12_signature`, `verify_tls13_signature`, `supported_verify_schemes`); a
//! verifier that only changes which certificate is trusted either hands them to the
//! verifier it wraps or checks them with the provider's algorithms, never anything else.
//! [`signatures!`] writes them inside such an `impl`. Owns nothing else (a leaf).

/// The three signature methods of a rustls verifier `impl`:
/// - `signatures!(inner)` hands them to the wrapped verifier in the field `inner`;
/// - `signatures!(algorithms: field)` checks them with the `WebPkiSupportedAlgorithms` in
///   `field` (a verifier that accepts any certificate still checks the handshake's
///   signatures, so the peer at least holds the presented key).
macro_rules! signatures {
    (inner) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
    (algorithms: $field:tt) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.$field)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.$field)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$field.supported_schemes()
        }
    };
}

pub(crate) use signatures;
