//! TLS for TCP sessions (and `wss://`), with rustls: configurations built from PEM files or
//! in-memory PEM bytes.
//!
//! Verification is on by default: a client checks the server's certificate chain against its
//! root CAs and the server name, and a server with a client CA requires and checks client
//! certificates (mutual TLS). Turning a client's verification off is possible, under a name
//! that says what it is ([`TlsClientConfigBuilder::dangerous_accept_any_server_certificate`]).
//!
//! Configurations are built once and shared: every error in a file or a key is reported by
//! `build()`, before any connection is made. The crypto provider is *ring*, chosen explicitly
//! (rustls's process-wide default provider is not consulted).

mod verify;

/// The rustls crate getty builds on: to inspect an [`Error::TlsHandshake`]'s source
/// (`source.get_ref()` downcasts to [`rustls::Error`]).
pub use futures_rustls::rustls;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures_rustls::rustls::crypto::{ring, CryptoProvider};
use futures_rustls::rustls::server::WebPkiClientVerifier;
use futures_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::{BoxError, Error, Result};

/// PEM text, in a file or in memory.
#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => write!(f, "{}", path.display()),
            // Never print key material.
            Pem::Bytes(bytes) => write!(f, "<{} bytes of PEM>", bytes.len()),
        }
    }
}

impl Pem {
    /// The certificates in it; none is an error.
    fn certs(&self, what: &str) -> Result<Vec<CertificateDer<'static>>> {
        let certs: std::result::Result<Vec<_>, _> = match self {
            Pem::File(path) => CertificateDer::pem_file_iter(path)
                .map_err(|e| self.error(what, e))?
                .collect(),
            Pem::Bytes(bytes) => CertificateDer::pem_slice_iter(bytes).collect(),
        };
        let certs = certs.map_err(|e| self.error(what, e))?;
        if certs.is_empty() {
            return Err(self.error(what, "no certificate found"));
        }
        Ok(certs)
    }

    /// The first private key in it (PKCS#8, PKCS#1 or SEC1).
    fn key(&self, what: &str) -> Result<PrivateKeyDer<'static>> {
        match self {
            Pem::File(path) => PrivateKeyDer::from_pem_file(path),
            Pem::Bytes(bytes) => PrivateKeyDer::from_pem_slice(bytes),
        }
        .map_err(|e| self.error(what, e))
    }

    fn error(&self, what: &str, err: impl Into<BoxError>) -> Error {
        Error::TlsConfig {
            what: format!("{what} ({self:?})"),
            source: err.into(),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn config_error(what: &str, err: impl Into<BoxError>) -> Error {
    Error::TlsConfig {
        what: what.to_string(),
        source: err.into(),
    }
}

/// A root store of the CA certificates in `pem`.
fn roots(pem: &Pem, what: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in pem.certs(what)? {
        roots
            .add(cert)
            .map_err(|e| pem.error(&format!("{what}: not a usable CA certificate"), e))?;
    }
    Ok(roots)
}

// ----- server ---------------------------------------------------------------------------------

/// A server's TLS configuration: its certificate chain and key, and optionally the CA that
/// client certificates must chain to (mutual TLS). Cheap to clone.
#[derive(Clone)]
pub struct TlsServerConfig {
    acceptor: TlsAcceptor,
}

impl TlsServerConfig {
    /// A builder; a certificate chain and a private key are required.
    ///
    /// ```no_run
    /// use getty_core::tls::TlsServerConfig;
    /// use getty_core::TcpServer;
    ///
    /// let tls = TlsServerConfig::builder()
    ///     .cert_chain_file("server-chain.pem") // leaf first
    ///     .private_key_file("server-key.pem")
    ///     .client_ca_file("clients-ca.pem") // optional: mutual TLS
    ///     .build()?;
    /// let builder = TcpServer::builder().tls(tls);
    /// // builder.serve(rt, codec, listener): every connection is a TLS session.
    /// # let _ = builder;
    /// # Ok::<(), getty_core::Error>(())
    /// ```
    pub fn builder() -> TlsServerConfigBuilder {
        TlsServerConfigBuilder::default()
    }

    /// A configuration from a rustls one built by hand (for what the builder does not offer).
    pub fn from_rustls(config: Arc<ServerConfig>) -> Self {
        TlsServerConfig {
            acceptor: TlsAcceptor::from(config),
        }
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfig").finish_non_exhaustive()
    }
}

/// Builds a [`TlsServerConfig`].
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until it is used"]
pub struct TlsServerConfigBuilder {
    cert_chain: Option<Pem>,
    key: Option<Pem>,
    client_ca: Option<Pem>,
    alpn: Vec<Vec<u8>>,
}

impl TlsServerConfigBuilder {
    /// The server's certificate chain (leaf first), from a PEM file.
    pub fn cert_chain_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cert_chain = Some(Pem::File(path.into()));
        self
    }

    /// The server's certificate chain (leaf first), as PEM text.
    pub fn cert_chain_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.cert_chain = Some(Pem::Bytes(pem.into()));
        self
    }

    /// The server's private key, from a PEM file.
    pub fn private_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key = Some(Pem::File(path.into()));
        self
    }

    /// The server's private key, as PEM text.
    pub fn private_key_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.key = Some(Pem::Bytes(pem.into()));
        self
    }

    /// Requires client certificates signed by the CA(s) in this PEM file (mutual TLS).
    pub fn client_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(Pem::File(path.into()));
        self
    }

    /// Requires client certificates signed by the CA(s) in this PEM text (mutual TLS).
    pub fn client_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client_ca = Some(Pem::Bytes(pem.into()));
        self
    }

    /// Protocols offered by ALPN, most preferred first (none by default).
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// Reads and checks everything: a missing or unreadable file, PEM without a certificate or
    /// key, or a key that does not match the certificate is an [`Error::TlsConfig`].
    pub fn build(self) -> Result<TlsServerConfig> {
        let chain = self
            .cert_chain
            .ok_or_else(|| config_error("server", "a certificate chain is required"))?
            .certs("server certificate chain")?;
        let key = self
            .key
            .ok_or_else(|| config_error("server", "a private key is required"))?
            .key("server private key")?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("server", e))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let roots = roots(pem, "client CA")?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| pem.error("client CA", e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| config_error("server certificate and key", e))?;
        config.alpn_protocols = self.alpn;
        Ok(TlsServerConfig::from_rustls(Arc::new(config)))
    }
}

// ----- client ---------------------------------------------------------------------------------

/// A client's TLS configuration: the root CAs it trusts, the name it expects the server to
/// prove, and optionally its own certificate (mutual TLS). Cheap to clone.
#[derive(Clone)]
pub struct TlsClientConfig {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl TlsClientConfig {
    /// A builder; root CAs are required unless verification is disabled.
    ///
    /// ```no_run
    /// use getty_core::tls::TlsClientConfig;
    /// use getty_core::TcpClientBuilder;
    ///
    /// let tls = TlsClientConfig::builder()
    ///     .root_ca_file("ca.pem")
    ///     .server_name("server.example") // what the certificate must be valid for
    ///     .build()?;
    /// let builder = TcpClientBuilder::new("127.0.0.1:8443".parse().unwrap()).tls(tls);
    /// // builder.start(rt, codec, listener): every connection is a TLS session.
    /// # let _ = builder;
    /// # Ok::<(), getty_core::Error>(())
    /// ```
    pub fn builder() -> TlsClientConfigBuilder {
        TlsClientConfigBuilder::default()
    }

    /// A configuration from a rustls one built by hand; `server_name` as
    /// [`TlsClientConfigBuilder::server_name`].
    pub fn from_rustls(config: Arc<ClientConfig>, server_name: Option<&str>) -> Result<Self> {
        let server_name = server_name.map(parse_server_name).transpose()?;
        Ok(TlsClientConfig {
            connector: TlsConnector::from(config),
            server_name,
        })
    }

    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name to verify when connecting to `addr` for a URL naming `url_host`: the
    /// configured one, else the URL's host, else the server's IP address.
    pub(crate) fn server_name_or(&self, url_host: &str, addr: SocketAddr) -> ServerName<'static> {
        match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(url_host.to_string())
                .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into())),
        }
    }

    /// The name to verify (and send as SNI) when connecting to `addr`: the configured one, or
    /// the server's IP address.
    pub(crate) fn server_name_for(&self, addr: SocketAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }
}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn parse_server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_string())
        .map_err(|e| config_error(&format!("server name {name:?}"), e))
}

/// Builds a [`TlsClientConfig`].
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until it is used"]
pub struct TlsClientConfigBuilder {
    roots: Option<Pem>,
    cert_chain: Option<Pem>,
    key: Option<Pem>,
    server_name: Option<String>,
    accept_any_server_certificate: bool,
    alpn: Vec<Vec<u8>>,
}

impl TlsClientConfigBuilder {
    /// Trusts the CA certificates in this PEM file.
    pub fn root_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = Some(Pem::File(path.into()));
        self
    }

    /// Trusts the CA certificates in this PEM text.
    pub fn root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots = Some(Pem::Bytes(pem.into()));
        self
    }

    /// Presents this certificate chain (leaf first, PEM file) to servers that ask for one.
    /// Needs a private key too.
    pub fn cert_chain_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cert_chain = Some(Pem::File(path.into()));
        self
    }

    /// Presents this certificate chain (leaf first, PEM text). Needs a private key too.
    pub fn cert_chain_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.cert_chain = Some(Pem::Bytes(pem.into()));
        self
    }

    /// The private key of the client certificate, from a PEM file.
    pub fn private_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key = Some(Pem::File(path.into()));
        self
    }

    /// The private key of the client certificate, as PEM text.
    pub fn private_key_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.key = Some(Pem::Bytes(pem.into()));
        self
    }

    /// The DNS name (or IP address) the server's certificate must be valid for, also sent as
    /// SNI. By default, the host of a `wss://` URL, otherwise the IP address connected to.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Protocols offered by ALPN, most preferred first (none by default).
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// **Dangerous**: accepts any server certificate, for any name, without checking it (the
    /// handshake's signatures are still checked). Anyone on the path can then impersonate the
    /// server. For tests and closed networks only; Go getty does this everywhere, getty-rs
    /// only when asked.
    pub fn dangerous_accept_any_server_certificate(mut self) -> Self {
        self.accept_any_server_certificate = true;
        self
    }

    /// Reads and checks everything: unreadable files, PEM without certificates or key, a
    /// certificate without a key (or the reverse), no root CA while verifying, or an invalid
    /// server name is an [`Error::TlsConfig`].
    pub fn build(self) -> Result<TlsClientConfig> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("client", e))?;
        let builder = if self.accept_any_server_certificate {
            log::warn!("TLS client configured to accept any server certificate (dangerous)");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verify::AcceptAnyServerCert::new(
                    provider,
                )))
        } else {
            let pem = self.roots.as_ref().ok_or_else(|| {
                config_error(
                    "client",
                    "root CAs are required (or, dangerously, accept any server certificate)",
                )
            })?;
            builder.with_root_certificates(roots(pem, "root CA")?)
        };
        let mut config = match (&self.cert_chain, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(chain), Some(key)) => builder
                .with_client_auth_cert(
                    chain.certs("client certificate chain")?,
                    key.key("client private key")?,
                )
                .map_err(|e| config_error("client certificate and key", e))?,
            _ => {
                return Err(config_error(
                    "client",
                    "a client certificate needs both a chain and a private key",
                ))
            }
        };
        config.alpn_protocols = self.alpn;
        TlsClientConfig::from_rustls(Arc::new(config), self.server_name.as_deref())
    }
}
