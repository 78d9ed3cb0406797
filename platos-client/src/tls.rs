//! One TLS configuration for every connection the SDK opens: REST and the
//! HTTP turn lane (through reqwest) and the realtime socket (through
//! [`crate::net`]), so all of them trust the same roots and present the same
//! client identity.
//!
//! The backend is chosen by Cargo feature (README, Features): `native-tls`
//! when enabled, else rustls with the provider its feature names
//! (`rustls`: aws-lc-rs, `rustls-ring`: ring). The provider is passed into
//! the SDK's own config; the process-wide default is never read or
//! installed, so the host application's TLS is left exactly as it was.
//! Roots are the platform's (corporate CAs installed on the machine count)
//! plus any the caller adds.

// The socket's half (tunnels, TLS streams) is used only by the realtime lanes.
#![cfg_attr(not(feature = "realtime"), allow(dead_code, unused_imports))]

use crate::config::Secret;
use crate::error::{Error, Result};

/// A client certificate and its private key (mutual TLS), both PEM.
#[derive(Clone)]
#[cfg_attr(
    not(any(feature = "__rustls", feature = "native-tls")),
    allow(dead_code)
)]
pub(crate) struct Identity {
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Secret,
}

/// The certificates in `bytes`: every PEM block, or one DER certificate.
#[cfg_attr(
    not(any(feature = "__rustls", feature = "native-tls", test)),
    allow(dead_code)
)]
fn certificates(bytes: &[u8]) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    if bytes.trim_ascii_start().starts_with(b"-----") {
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(bytes)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::config(format!("bad PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(Error::config("the PEM data holds no certificate"));
        }
        Ok(certs)
    } else if bytes.is_empty() {
        Err(Error::config("an empty certificate was given"))
    } else {
        Ok(vec![rustls_pki_types::CertificateDer::from(bytes.to_vec())])
    }
}

#[cfg(feature = "native-tls")]
mod backend {
    use super::*;

    pub(crate) type Stream = tokio_native_tls::TlsStream<tokio::net::TcpStream>;

    #[derive(Clone)]
    pub(crate) struct Tls {
        connector: native_tls::TlsConnector,
    }

    impl Tls {
        pub(crate) fn new(extra_roots: &[Vec<u8>], identity: Option<&Identity>) -> Result<Self> {
            let mut builder = native_tls::TlsConnector::builder();
            for bytes in extra_roots {
                for der in certificates(bytes)? {
                    let cert = native_tls::Certificate::from_der(&der)
                        .map_err(|e| Error::config(format!("bad root certificate: {e}")))?;
                    builder.add_root_certificate(cert);
                }
            }
            if let Some(id) = identity {
                let identity =
                    native_tls::Identity::from_pkcs8(&id.cert_pem, id.key_pem.expose().as_bytes())
                        // The key's bytes are not in native-tls's message.
                        .map_err(|e| Error::config(format!("bad client identity: {e}")))?;
                builder.identity(identity);
            }
            let connector = builder
                .build()
                .map_err(|e| Error::config(format!("TLS setup: {e}")))?;
            Ok(Tls { connector })
        }

        pub(crate) fn configure_http(
            &self,
            builder: reqwest::ClientBuilder,
        ) -> reqwest::ClientBuilder {
            builder.tls_backend_preconfigured(self.connector.clone())
        }

        pub(crate) async fn connect(
            &self,
            host: &str,
            tcp: tokio::net::TcpStream,
        ) -> std::io::Result<Stream> {
            tokio_native_tls::TlsConnector::from(self.connector.clone())
                .connect(host, tcp)
                .await
                .map_err(std::io::Error::other)
        }
    }

    /// Whether a connect error is the peer's certificate being refused.
    pub(crate) fn is_refusal(e: &std::io::Error) -> bool {
        e.get_ref()
            .is_some_and(|inner| inner.is::<native_tls::Error>())
    }
}

#[cfg(all(feature = "__rustls", not(feature = "native-tls")))]
mod backend {
    use std::sync::Arc;

    use rustls::crypto::CryptoProvider;

    use super::*;

    pub(crate) type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

    #[derive(Clone)]
    pub(crate) struct Tls {
        /// ALPN h2 and http/1.1, for reqwest.
        http: Arc<rustls::ClientConfig>,
        /// No ALPN: a WebSocket upgrade is HTTP/1.1.
        socket: Arc<rustls::ClientConfig>,
    }

    /// The provider this build names: never the process default.
    fn provider() -> Arc<CryptoProvider> {
        #[cfg(feature = "rustls")]
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        // rustls 0.23.48 deprecates ring's provider (no post-quantum key
        // exchange); `rustls-ring` is the caller's explicit choice of it.
        #[cfg(not(feature = "rustls"))]
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        Arc::new(provider)
    }

    impl Tls {
        pub(crate) fn new(extra_roots: &[Vec<u8>], identity: Option<&Identity>) -> Result<Self> {
            let provider = provider();
            let mut extra = Vec::new();
            for bytes in extra_roots {
                extra.extend(certificates(bytes)?);
            }
            let verifier =
                rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
                    .map_err(|e| Error::config(format!("loading the trust roots: {e}")))?;
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::config(format!("TLS setup: {e}")))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier));
            let config = match identity {
                None => builder.with_no_client_auth(),
                Some(id) => {
                    use rustls_pki_types::pem::PemObject;
                    let chain = certificates(&id.cert_pem)?;
                    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(
                        id.key_pem.expose().as_bytes(),
                    )
                    // The PEM error names the section, never the key's bytes.
                    .map_err(|e| Error::config(format!("bad client key: {e}")))?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| Error::config(format!("bad client identity: {e}")))?
                }
            };
            let mut http = config.clone();
            http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Ok(Tls {
                http: Arc::new(http),
                socket: Arc::new(config),
            })
        }

        pub(crate) fn configure_http(
            &self,
            builder: reqwest::ClientBuilder,
        ) -> reqwest::ClientBuilder {
            builder.tls_backend_preconfigured((*self.http).clone())
        }

        pub(crate) async fn connect(
            &self,
            host: &str,
            tcp: tokio::net::TcpStream,
        ) -> std::io::Result<Stream> {
            let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            tokio_rustls::TlsConnector::from(self.socket.clone())
                .connect(name, tcp)
                .await
        }
    }

    /// Whether a connect error is the peer's certificate being refused.
    pub(crate) fn is_refusal(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
    }
}

#[cfg(not(any(feature = "__rustls", feature = "native-tls")))]
mod backend {
    use super::*;

    /// No TLS backend: `https://` cannot be dialled; this type has no value.
    pub(crate) enum Stream {}

    impl tokio::io::AsyncRead for Stream {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            match *self {}
        }
    }

    impl tokio::io::AsyncWrite for Stream {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            match *self {}
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            match *self {}
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            match *self {}
        }
    }

    #[derive(Clone)]
    pub(crate) struct Tls;

    impl Tls {
        pub(crate) fn new(extra_roots: &[Vec<u8>], identity: Option<&Identity>) -> Result<Self> {
            if !extra_roots.is_empty() || identity.is_some() {
                return Err(Error::config(
                    "root certificates and client identities need a TLS feature \
                     (`rustls`, `rustls-ring` or `native-tls`)",
                ));
            }
            Ok(Tls)
        }

        pub(crate) fn configure_http(
            &self,
            builder: reqwest::ClientBuilder,
        ) -> reqwest::ClientBuilder {
            builder
        }

        pub(crate) async fn connect(
            &self,
            _host: &str,
            _tcp: tokio::net::TcpStream,
        ) -> std::io::Result<Stream> {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this build has no TLS feature (`rustls`, `rustls-ring` or `native-tls`)",
            ))
        }
    }

    pub(crate) fn is_refusal(_: &std::io::Error) -> bool {
        false
    }
}

pub(crate) use backend::{Stream, Tls, is_refusal};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_input_is_checked() {
        assert!(certificates(b"").is_err());
        assert!(certificates(b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n").is_err());
        assert!(
            certificates(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_err()
        );
        // DER is taken as given; the TLS library judges it when it is used.
        assert_eq!(certificates(&[0x30, 0x03, 1, 2, 3]).unwrap().len(), 1);
    }
}
