//! TLS settings shared by REST and the realtime socket, so both trust the
//! same roots. With the default `rustls` feature the ring provider is
//! installed explicitly in the config (no process-wide default is needed or
//! touched); with `native-tls` the platform's TLS is used by both.

use std::time::Duration;

use crate::error::{Error, Result};

impl Tls {
    /// The HTTP client of every REST and event-stream lane: these roots,
    /// this connect timeout, and no redirects. reqwest strips
    /// `Authorization` on a cross-origin redirect but would forward the
    /// session token, user token and scope headers; the API never
    /// redirects, so a 3xx surfaces as a refusal instead.
    pub(crate) fn http_client(&self, connect_timeout: Duration) -> Result<reqwest::Client> {
        self.configure_http(reqwest::Client::builder())
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::config(format!("building the HTTP client: {e}")))
    }
}

#[derive(Clone)]
pub(crate) struct Tls {
    #[cfg(feature = "rustls")]
    config: std::sync::Arc<rustls::ClientConfig>,
}

#[cfg(feature = "rustls")]
impl Tls {
    pub(crate) fn new(extra_roots: &[Vec<u8>]) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in extra_roots {
            for der in certificates(cert)? {
                roots
                    .add(der)
                    .map_err(|e| Error::config(format!("bad root certificate: {e}")))?;
            }
        }
        // rustls 0.23.48 deprecates ring's provider (no post-quantum key
        // exchange); ring stays what this feature means until the TLS
        // features change (issue 17, item 1).
        #[allow(deprecated)]
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            config: std::sync::Arc::new(config),
        })
    }

    pub(crate) fn configure_http(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        builder.tls_backend_preconfigured(config)
    }

    #[cfg(feature = "realtime")]
    pub(crate) fn websocket_connector(&self) -> Option<tokio_tungstenite::Connector> {
        Some(tokio_tungstenite::Connector::Rustls(self.config.clone()))
    }
}

#[cfg(feature = "rustls")]
fn certificates(bytes: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    if bytes.starts_with(b"-----") {
        rustls::pki_types::CertificateDer::pem_slice_iter(bytes)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::config(format!("bad PEM certificate: {e}")))
    } else {
        Ok(vec![rustls::pki_types::CertificateDer::from(
            bytes.to_vec(),
        )])
    }
}

#[cfg(not(feature = "rustls"))]
impl Tls {
    pub(crate) fn new(extra_roots: &[Vec<u8>]) -> Result<Self> {
        if !extra_roots.is_empty() {
            return Err(Error::config(
                "extra root certificates need the `rustls` feature",
            ));
        }
        Ok(Tls {})
    }

    pub(crate) fn configure_http(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder
    }

    #[cfg(feature = "realtime")]
    pub(crate) fn websocket_connector(&self) -> Option<tokio_tungstenite::Connector> {
        None
    }
}
