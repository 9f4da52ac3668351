//! A TLS terminator in front of a broker, as deployments put one (stunnel, Envoy, a cloud load
//! balancer): clients speak TLS to it, verified against a CA of the test's own, and it relays the
//! bytes to the broker, which advertises the terminator's address so that every connection goes
//! through it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub struct TlsTerminator {
    /// The CA that signed the terminator's certificate (for 127.0.0.1), as a PEM file.
    pub ca_file: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl TlsTerminator {
    /// Listens on `address`, relaying to `upstream`; writes its CA into `dir`.
    pub fn start(address: &str, upstream: &str, dir: &Path) -> Self {
        let (ca_pem, certificate, key) = certificate_for_localhost();
        let ca_file = dir.join("kafka-ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        // The one crypto provider built in (ring).
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certificate], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind(address)).unwrap();
        let upstream = upstream.to_owned();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends here.
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut broker) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                });
            }
        });
        Self {
            ca_file,
            _runtime: runtime,
        }
    }
}

/// A new CA's PEM, and a certificate it signed for 127.0.0.1 with its key.
pub fn certificate_for_localhost() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Named apart from the certificate it signs, which would otherwise pass for self-signed.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Vigil tests' CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let certificate = params.signed_by(&key, &ca, &ca_key).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (ca.pem(), certificate.der().clone(), key)
}
