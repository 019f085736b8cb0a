//! TLS to PostgreSQL, with libpq's meanings of `sslmode` and `sslrootcert`, so that a
//! `store.url` copied from a managed database's console means here what it means to `psql`.
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`, and no root
//! certificates: both parameters are taken out of the URL here, and the connector made from
//! them does the checking.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{Cause, StoreError};

/// `sslmode`, as libpq reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked.
    /// libpq's default, and so the default here.
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless `sslrootcert` is
    /// given: then as `VerifyCa`, as libpq does).
    Require,
    /// TLS, the certificate chain checked against the roots; the host name not.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl Mode {
    /// The mode of `sslmode` (libpq's default, `prefer`, when absent); `require` with a
    /// root file checks the chain, as in libpq.
    fn of(sslmode: Option<&str>, root: Option<&str>) -> Result<Self, StoreError> {
        Ok(match (sslmode.unwrap_or("prefer"), root) {
            ("require", Some(_)) => Self::VerifyCa,
            (value, _) => Self::parse(value)?,
        })
    }

    fn parse(value: &str) -> Result<Self, StoreError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => {
                return Err(StoreError::Open(
                    "store.url: sslmode=allow is not supported; use prefer or disable".into(),
                ));
            }
            other => {
                return Err(StoreError::Open(format!(
                    "store.url: sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                ).into()));
            }
        })
    }
}

/// The connection settings of `url` and the TLS connector its `sslmode` and `sslrootcert`
/// ask for.
///
/// # Errors
/// When the URL or one of the two parameters is invalid, or the root certificates cannot be
/// read.
pub fn connect_config(
    url: &str,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), StoreError> {
    let (rest, params) = take_params(url, &["sslmode", "sslrootcert"]);
    let [mode, root] = params;
    let mode = Mode::of(mode.as_deref(), root.as_deref())?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| StoreError::Open(Cause::described(format!("store.url: {e}"), e)))?;
    config.ssl_mode(match mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let lenient = |chain| -> Arc<dyn ServerCertVerifier> {
        Arc::new(Lenient {
            chain,
            algorithms: provider.signature_verification_algorithms,
        })
    };
    let verifier = match mode {
        Mode::Disable | Mode::Prefer | Mode::Require => lenient(None),
        Mode::VerifyCa => lenient(Some(roots(root.as_deref(), &provider)?)),
        Mode::VerifyFull => roots(root.as_deref(), &provider)?,
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Open(Cause::described(format!("TLS to PostgreSQL: {e}"), e)))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((config, MakeRustlsConnect::new(tls)))
}

/// The verifier of certificate chains: against the PEM file `root` (libpq's `sslrootcert`),
/// or against the system's roots when there is none or it is `system`.
fn roots(
    root: Option<&str>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, StoreError> {
    let Some(path) = root.filter(|r| *r != "system") else {
        let verifier = rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| {
            StoreError::Open(Cause::described(
                format!("the system's root certificates: {e}"),
                e,
            ))
        })?;
        return Ok(Arc::new(verifier));
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        StoreError::Open(format!("store.url: sslrootcert={path}: {e}").into())
    };
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        store
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if store.is_empty() {
        return Err(unreadable(&"no certificate in the file"));
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map(|v| v as Arc<dyn ServerCertVerifier>)
        .map_err(|e| unreadable(&e))
}

/// Takes the parameters `names` out of a `postgres://` URL's query or a `key=value`
/// connection string; the rest, and each one's value (the last, if repeated).
fn take_params<const N: usize>(url: &str, names: &[&str; N]) -> (String, [Option<String>; N]) {
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    // Only the URL form percent-encodes; in the key=value form `%` is itself.
    let is_url = url.contains("://");
    let mut take = |pair: &str| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| match is_url {
            true => percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned(),
            false => s.to_owned(),
        };
        match names.iter().position(|n| *n == decode(key)) {
            Some(i) => {
                found[i] = Some(decode(value));
                false
            }
            None => true,
        }
    };
    let rest = if is_url {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query.split('&').filter(|p| take(p)).collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        // A quoted value with spaces is left to tokio-postgres, which refuses these two keys.
        url.split_whitespace()
            .filter(|p| take(p))
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, found)
}

/// The certificate check of `prefer`, `require` and `verify-ca`, looser than rustls': with
/// no `chain` verifier any certificate passes, as in libpq; with one, the chain must hold
/// but the host name need not match. The handshake's signatures are always checked, so the
/// connection is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<dyn ServerCertVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // The chain is checked before the name: a name error means the chain held.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_both_url_forms() {
        let names = &["sslmode", "sslrootcert"];
        let (rest, [mode, root]) = take_params(
            "postgres://u:p@db/chat?application_name=cb&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
            names,
        );
        assert_eq!(rest, "postgres://u:p@db/chat?application_name=cb");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));

        let (rest, [mode, root]) = take_params("postgres://db/chat?sslmode=require", names);
        assert_eq!(
            (rest.as_str(), mode.as_deref(), root),
            ("postgres://db/chat", Some("require"), None)
        );

        let (_, [_, root]) = take_params("host=db sslrootcert=/etc/100%25.pem", names);
        assert_eq!(
            root.as_deref(),
            Some("/etc/100%25.pem"),
            "no decoding in key=value"
        );

        let (rest, [mode, _]) = take_params("host=db dbname=chat sslmode=disable", names);
        assert_eq!(
            (rest.as_str(), mode.as_deref()),
            ("host=db dbname=chat", Some("disable"))
        );
    }

    #[test]
    fn an_unknown_sslmode_or_a_missing_root_file_is_a_clear_error() {
        let error = connect_config("postgres://db/chat?sslmode=verify")
            .err()
            .expect("refused");
        assert!(
            error.to_string().contains("sslmode=verify is not one of"),
            "{error}"
        );
        let error =
            connect_config("postgres://db/chat?sslmode=verify-full&sslrootcert=/nonexistent.pem")
                .err()
                .expect("refused");
        assert!(
            error.to_string().contains("sslrootcert=/nonexistent.pem"),
            "{error}"
        );
    }

    #[test]
    fn require_with_a_root_file_checks_the_chain_as_libpq_does() {
        assert_eq!(Mode::of(None, None).unwrap(), Mode::Prefer);
        assert_eq!(Mode::of(Some("require"), None).unwrap(), Mode::Require);
        assert_eq!(
            Mode::of(Some("require"), Some("ca.pem")).unwrap(),
            Mode::VerifyCa
        );
        assert_eq!(
            Mode::of(Some("verify-full"), Some("ca.pem")).unwrap(),
            Mode::VerifyFull
        );
        let (config, _) = connect_config("postgres://db/chat").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Prefer);
        let (config, _) = connect_config("postgres://db/chat?sslmode=disable").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
    }
}
