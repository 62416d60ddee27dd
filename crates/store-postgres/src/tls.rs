//! TLS to the database (rustls): used when the URL says
//! `sslmode=require`, and then the server's certificate is verified
//! against the system's roots and, if given, the PEM file of
//! `PgOptions::root_certificates` (`PGSSLROOTCERT`, as for libpq). Any
//! other mode connects in plain text: wok never encrypts without
//! verifying.
use crate::PgOptions;
use std::sync::Arc;
use store::StoreError;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector for `config` (whose mode it settles: required, or off).
pub(crate) fn connector(
    config: &mut tokio_postgres::Config,
    options: &PgOptions,
) -> Result<MakeRustlsConnect, StoreError> {
    let refuse = |message: String| StoreError::backend(message, false);
    if config.get_ssl_mode() != SslMode::Require {
        config.ssl_mode(SslMode::Disable);
    }
    let mut roots = rustls::RootCertStore::empty();
    if config.get_ssl_mode() == SslMode::Require {
        // The system's roots (those it cannot read are skipped).
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = &options.root_certificates {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                .map_err(|error| {
                    refuse(format!(
                        "reading the database's root certificates from {}: {error}",
                        path.display()
                    ))
                })?;
            for certificate in certificates {
                roots.add(certificate).map_err(|error| {
                    refuse(format!(
                        "a root certificate in {} is not valid: {error}",
                        path.display()
                    ))
                })?;
            }
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| refuse(format!("setting up TLS: {error}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(tls))
}
