//! A throwaway PKI for TLS scenarios: a CA made on the spot and the leaf certificates it signs.
//! Nothing is read from disk and no private key is ever committed.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

use getty_core::tls::{TlsClientConfig, TlsServerConfig};

/// A certificate authority for one scenario.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate (PEM) and its private key (PEM).
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate chain, leaf only.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: String,
}

impl TestCa {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA's certificate, to trust.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses), good for servers and clients.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server configuration for 127.0.0.1 and localhost, signed by this CA; with `client_ca`,
    /// client certificates from that CA are required.
    pub fn server_config(&self, client_ca: Option<&TestCa>) -> TlsServerConfig {
        let leaf = self.leaf(&["localhost", "127.0.0.1"]);
        let mut builder = TlsServerConfig::builder()
            .cert_chain_pem(leaf.cert_pem)
            .private_key_pem(leaf.key_pem);
        if let Some(ca) = client_ca {
            builder = builder.client_ca_pem(ca.cert_pem());
        }
        builder.build().expect("server TLS config")
    }

    /// A client configuration trusting this CA, presenting `identity` if given.
    pub fn client_config(&self, identity: Option<&Leaf>) -> TlsClientConfig {
        let mut builder = TlsClientConfig::builder().root_ca_pem(self.cert_pem());
        if let Some(leaf) = identity {
            builder = builder
                .cert_chain_pem(leaf.cert_pem.clone())
                .private_key_pem(leaf.key_pem.clone());
        }
        builder.build().expect("client TLS config")
    }
}
