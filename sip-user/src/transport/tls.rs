//! SIP over TLS (RFC 3261 §26.2; RFC 5630) with rustls: the server side of the edge's TLS
//! listeners. The certificate chain and key come from PEM files (re-read on SIGHUP); TLS 1.3
//! only unless `tls.min_version = "1.2"`; with `tls.client_ca`, every client must present a
//! certificate that chains to it (mutual TLS, for trunks), and its fingerprint is logged with
//! the connection.

use std::{fs::File, io::BufReader, path::Path, path::PathBuf, sync::Arc, time::Duration};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
    version::{TLS12, TLS13},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};

/// The lowest TLS version a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum MinVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// What the TLS listeners are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The config section they come from (`tls`, `admin`), for the errors.
    pub section: &'static str,
    /// PEM: the certificate, then its chain.
    pub certificate: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    pub min_version: MinVersion,
    /// PEM bundle of the CAs a client's certificate must chain to; none: no client certificates.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS settings could not be loaded; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{section}.certificate {path}: {message}")]
    Certificate {
        section: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{section}.key {path}: {message}")]
    Key {
        section: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{section}.client_ca {path}: {message}")]
    ClientCa {
        section: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("tls.server_ca {path}: {message}")]
    ServerCa { path: PathBuf, message: String },
    #[error("tls: no CA certificates to verify servers with (set tls.server_ca): {0}")]
    NoRoots(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How long a client has for its handshake by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_reader_iter(BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE in it".to_string());
    }
    Ok(certs)
}

/// Reads the files into a rustls server config (ALPN is not used by SIP).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.certificate).map_err(|message| TlsError::Certificate {
        section: files.section,
        path: files.certificate.clone(),
        message,
    })?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        section: files.section,
        path: files.key.clone(),
        message: format!("no private key read ({e})"),
    })?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match files.min_version {
        MinVersion::Tls13 => &[&TLS13],
        MinVersion::Tls12 => &[&TLS13, &TLS12],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = match &files.client_ca {
        Some(path) => {
            let err = |message: String| TlsError::ClientCa {
                section: files.section,
                path: path.clone(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for cert in certificates(path).map_err(err)? {
                roots
                    .add(cert)
                    .map_err(|e| err(format!("not a CA certificate ({e})")))?;
            }
            let verifier: Arc<dyn ClientCertVerifier> =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| err(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Key {
            section: files.section,
            path: files.key.clone(),
            message: format!("does not go with the certificate ({e})"),
        })?;
    // No TLS 1.3 session tickets: a SIP connection lives long and is rarely resumed, and
    // clients that read a record right after the handshake expecting SIP (sipsak) take the
    // ticket for an empty answer.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The client side, for TLS connections we open (to backends and next hops): TLS 1.3 (1.2 too
/// with `min_version = "1.2"`), servers verified against `server_ca` or, without it, the
/// system's CA certificates.
pub fn client_config(
    server_ca: Option<&Path>,
    min_version: MinVersion,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match server_ca {
        Some(path) => {
            let err = |message: String| TlsError::ServerCa {
                path: path.to_path_buf(),
                message,
            };
            for cert in certificates(path).map_err(err)? {
                roots
                    .add(cert)
                    .map_err(|e| err(format!("not a CA certificate ({e})")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert); // a system bundle may hold a certificate rustls refuses
            }
            if roots.is_empty() {
                return Err(TlsError::NoRoots(format!("{:?}", found.errors)));
            }
        }
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        MinVersion::Tls13 => &[&TLS13],
        MinVersion::Tls12 => &[&TLS13, &TLS12],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why a handshake failed, for `tls_handshake_failures_total{reason}`.
pub fn failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::Error as E;
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "closed",
            std::io::ErrorKind::InvalidData => "not_tls",
            _ => "io",
        };
    };
    match tls {
        E::PeerIncompatible(_) => "incompatible",
        E::InvalidCertificate(_) => "bad_certificate",
        E::NoCertificatesPresented => "no_certificate",
        E::AlertReceived(_) => "alert",
        E::InvalidMessage(_) | E::InappropriateHandshakeMessage { .. } => "not_tls",
        _ => "other",
    }
}

/// True if a client's (verified) certificate carries one of `names` as a subject alternative
/// name: such a client is inside, like a `trusted` address (`tls.trusted_names`).
pub fn names_any(
    cert: &CertificateDer<'_>,
    names: &[rustls_pki_types::ServerName<'static>],
) -> bool {
    if names.is_empty() {
        return false; // no certificate parsing for nothing
    }
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    names
        .iter()
        .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
}

/// The SHA-256 of a peer's certificate, hex: the identity logs and routing can name.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
