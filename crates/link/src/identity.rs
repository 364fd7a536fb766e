//! The cluster's identity, derived from its secret.
//!
//! The CA key is an Ed25519 key whose seed is Argon2id(secret): every node derives the same CA
//! from the same secret, and a captured certificate gives an attacker only a slow, memory-hard
//! guessing game against the secret. Each node then makes a fresh leaf key at every start and
//! signs its own certificate with the CA key. Peers verify the chain with rustls' ordinary
//! WebPKI verifiers, on both sides of every connection, against the fixed name
//! [`CLUSTER_SERVER_NAME`] (nodes dial addresses that change; the name proves membership, not
//! location).

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::LinkError;
use crate::sealing::SecretSealer;

/// The name every node's certificate carries and every node verifies.
pub const CLUSTER_SERVER_NAME: &str = "redcloud-cluster";

/// Shortest cluster secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Salt of the CA key derivation: fixed, so every node derives the same key, and versioned, so
/// a future scheme can never collide with this one.
const CA_KEY_SALT: &[u8] = b"redcloud cluster CA key v1";
/// Argon2id cost of the derivation (64 MiB, 3 passes): paid once per process start, and by an
/// attacker once per guess.
const CA_KEY_MEMORY_KIB: u32 = 64 * 1024;
const CA_KEY_PASSES: u32 = 3;

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The cluster secret. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ClusterSecret(String);

impl ClusterSecret {
    /// A secret from its text (surrounding white space, such as a file's last newline, is not
    /// part of it).
    pub fn new(text: &str) -> Result<Self, LinkError> {
        let text = text.trim();
        if text.len() < MIN_SECRET_BYTES {
            return Err(LinkError::WeakSecret {
                got: text.len(),
                min: MIN_SECRET_BYTES,
            });
        }
        Ok(Self(text.to_owned()))
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

/// This node's TLS material for cluster links.
pub struct ClusterTls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    sealer: Arc<SecretSealer>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn derive_err(e: impl std::fmt::Display) -> LinkError {
    LinkError::Derive(e.to_string())
}

/// Argon2id(secret): the CA key's seed, and the root of the sealing key.
fn cluster_seed(secret: &ClusterSecret) -> Result<[u8; 32], LinkError> {
    let params =
        argon2::Params::new(CA_KEY_MEMORY_KIB, CA_KEY_PASSES, 1, Some(32)).map_err(derive_err)?;
    let mut seed = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(secret.0.as_bytes(), CA_KEY_SALT, &mut seed)
        .map_err(derive_err)?;
    Ok(seed)
}

fn ca_key(seed: &[u8; 32]) -> Result<KeyPair, LinkError> {
    let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(seed);
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), &PKCS_ED25519)
        .map_err(derive_err)
}

/// The CA certificate's fields: fixed, so every node builds the same trust anchor.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "RedCloud cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(SerialNumber::from_slice(&[1]));
    params
}

impl ClusterTls {
    /// Derives the cluster CA from `secret` and issues this node a fresh certificate.
    pub fn derive(secret: &ClusterSecret) -> Result<Self, LinkError> {
        let seed = cluster_seed(secret)?;
        let ca_key = ca_key(&seed)?;
        let ca_cert = ca_params().self_signed(&ca_key).map_err(derive_err)?;
        let issuer = Issuer::new(ca_params(), ca_key);

        let leaf_key = KeyPair::generate_for(&PKCS_ED25519).map_err(derive_err)?;
        let mut leaf =
            CertificateParams::new(vec![CLUSTER_SERVER_NAME.to_owned()]).map_err(derive_err)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "RedCloud node");
        leaf.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(derive_err)?;

        let chain = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone())?;
        let roots = Arc::new(roots);

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
                .build()
                .map_err(derive_err)?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        // gRPC clients insist on negotiating HTTP/2; HTTP/1.1 serves the rest.
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;

        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
            ca_pem: ca_cert.pem(),
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            sealer: Arc::new(SecretSealer::from_seed(&seed)),
        })
    }

    /// What a cluster listener accepts: TLS 1.3 from nodes holding the secret, nothing else.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.server)
    }

    /// What this node presents and checks when it calls another node.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.client)
    }
}

/// How this node talks to the others.
#[derive(Clone, Debug)]
pub enum ClusterLink {
    /// Mutual TLS keyed by the cluster secret.
    Tls(Arc<ClusterTls>),
    /// Plain TCP: `--insecure`, or a node whose cluster listener only listens on loopback.
    Plain,
}

impl ClusterLink {
    /// The link for `secret`, or a plain one without.
    pub fn new(secret: Option<&ClusterSecret>) -> Result<Self, LinkError> {
        Ok(match secret {
            Some(secret) => Self::Tls(Arc::new(ClusterTls::derive(secret)?)),
            None => Self::Plain,
        })
    }

    /// What seals secrets for the log: keyed by the cluster secret, or well known without one.
    pub fn sealer(&self) -> Arc<SecretSealer> {
        match self {
            Self::Tls(tls) => Arc::clone(&tls.sealer),
            Self::Plain => Arc::new(SecretSealer::well_known()),
        }
    }

    /// Whether links are authenticated and encrypted.
    pub fn is_secure(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// What a cluster listener on this link accepts: `None` for plain TCP.
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        match self {
            Self::Tls(tls) => Some(tls.server_config()),
            Self::Plain => None,
        }
    }

    /// The URL scheme of gRPC endpoints on this link.
    pub fn grpc_scheme(&self) -> &'static str {
        match self {
            Self::Tls(_) => "https",
            Self::Plain => "http",
        }
    }

    /// Configures a tonic endpoint for this link.
    pub fn tonic_endpoint(
        &self,
        endpoint: tonic::transport::Endpoint,
    ) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
        match self {
            Self::Plain => Ok(endpoint),
            Self::Tls(tls) => endpoint.tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem))
                    .identity(tonic::transport::Identity::from_pem(
                        &tls.cert_pem,
                        &tls.key_pem,
                    ))
                    .domain_name(CLUSTER_SERVER_NAME),
            ),
        }
    }
}

/// A server configuration for the client listener from PEM files (`--tls-cert`, `--tls-key`).
pub fn client_listener_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, LinkError> {
    let file_err = |path: &Path, e: &dyn std::fmt::Display| LinkError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(cert, &e))?;
    if chain.is_empty() {
        return Err(file_err(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, &e))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration for reaching a controller's client listener over `https://`: it
/// trusts the certificates in the PEM file `ca_certs` (one CA, or a whole system bundle), or
/// nothing at all without one (plain `http://` needs no TLS).
pub fn https_client_config(ca_certs: Option<&Path>) -> Result<ClientConfig, LinkError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = ca_certs {
        let file_err = |e: &dyn std::fmt::Display| LinkError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_err(&e))? {
            roots.add(cert.map_err(|e| file_err(&e))?)?;
        }
        if roots.is_empty() {
            return Err(file_err(&"no certificate in the file"));
        }
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_and_never_printed() {
        assert!(matches!(
            ClusterSecret::new("  short \n"),
            Err(LinkError::WeakSecret { got: 5, .. })
        ));
        let secret = ClusterSecret::new("correct horse battery staple\n").unwrap();
        assert!(!format!("{secret:?}").contains("horse"));
    }

    #[test]
    fn one_secret_gives_one_ca_and_distinct_node_keys() {
        let secret = ClusterSecret::new("0123456789abcdef0123").unwrap();
        let a = ClusterTls::derive(&secret).unwrap();
        let b = ClusterTls::derive(&secret).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_ne!(a.cert_pem, b.cert_pem);
        let other =
            ClusterTls::derive(&ClusterSecret::new("another secret, other cluster").unwrap())
                .unwrap();
        assert_ne!(a.ca_pem, other.ca_pem);
    }
}
