//! Transport security end to end: every Kafka client through a TLS terminator in front of the
//! broker, Redis over TLS with a password; each verified against a CA of the test's own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::stack::{self, Stack, Tansu, generate};

/// Kafka over TLS, verified: every client (`vigil migrate`'s admin client, the intake's
/// producer, the scorer's consumers and producers) reaches the broker through a TLS terminator
/// whose certificate a CA of the test's own signed, configured by `[kafka.client]` alone; a
/// payment posted is decided. A service that does not trust that CA never reaches the broker.
#[test]
fn every_kafka_client_speaks_tls_to_a_broker_it_verifies() {
    let Some(binary) = Tansu::binary() else {
        eprintln!("skipped: set VIGIL_TANSU to a tansu binary to run this test (.ci/run does)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let terminator = format!("127.0.0.1:{}", stack::free_port());
    let broker = Tansu::start_advertising(binary, dir.path(), Some(&terminator));
    let tls = TlsTerminator::start(&terminator, &broker.address, dir.path());
    let ca = tls.ca_file.to_str().unwrap();
    let stack = Stack::with_env(
        &terminator,
        &[
            ("VIGIL__KAFKA__CLIENT__SECURITY_PROTOCOL", "ssl"),
            ("VIGIL__KAFKA__CLIENT__SSL_CA_LOCATION", ca),
        ],
    );
    let (lines, _) = generate(dir.path(), 2, 50);
    let (_serve, address, ops) = stack.service(&["serve"], &[]);
    stack.post_ndjson(&address, "/v1/transactions", &lines, 250);
    stack.wait_for_decisions(lines.len() as i64);
    let ready = |ops: &str| {
        reqwest::blocking::get(format!("{ops}/ready"))
            .unwrap()
            .status()
    };
    assert_eq!(ready(&ops), 200);

    let untrusted = dir.path().join("other-ca.pem");
    std::fs::write(&untrusted, LocalCertificate::new().ca_pem).unwrap();
    let (_untrusting, _, untrusting_ops) = stack.service(
        &["ingest"],
        &[(
            "VIGIL__KAFKA__CLIENT__SSL_CA_LOCATION",
            untrusted.to_str().unwrap(),
        )],
    );
    assert_eq!(
        ready(&untrusting_ops),
        503,
        "the broker's certificate refused"
    );
}

/// Redis over TLS with a password (`rediss://:PASSWORD@host`), its certificate verified against
/// the CA the process trusts (`SSL_CERT_FILE` here; the system's roots otherwise): the scorer
/// writes each card's risk there, and the API reads it back.
#[test]
fn the_services_reach_redis_over_tls_with_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = LocalCertificate::new();
    let port = stack::free_port();
    let _redis = stack::RedisServer::start_tls(dir.path(), port, &certificate, "s3cret");
    let ca = dir.path().join("redis-ca.pem");
    std::fs::write(&ca, &certificate.ca_pem).unwrap();
    let broker = stack::Broker::start(dir.path(), 2);
    let url = format!("rediss://:s3cret@127.0.0.1:{port}");
    let stack = Stack::with_env(
        &broker.address,
        &[
            ("VIGIL__REDIS__URL", &url),
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
        ],
    );
    let (lines, _) = generate(dir.path(), 2, 50);
    let (_serve, address, _) = stack.service(&["serve"], &[]);
    stack.post_ndjson(&address, "/v1/transactions", &lines, 250);
    stack.wait_for_decisions(lines.len() as i64);
    let cards = stack.pairs_of("SELECT card_id, decision FROM decisions");
    let card = cards.keys().next().unwrap();
    let investigator = stack.create_key("investigator", "ana");
    let client = reqwest::blocking::Client::new();
    stack::wait_until("the card's risk, read back from Redis", || {
        client
            .get(format!("{address}/v1/cards/{card}/risk"))
            .bearer_auth(&investigator)
            .send()
            .unwrap()
            .status()
            == 200
    });
}

pub struct TlsTerminator {
    /// The CA that signed the terminator's certificate (for 127.0.0.1), as a PEM file.
    pub ca_file: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl TlsTerminator {
    /// Listens on `address`, relaying to `upstream`; writes its CA into `dir`.
    pub fn start(address: &str, upstream: &str, dir: &Path) -> Self {
        let local = LocalCertificate::new();
        let ca_file = dir.join("kafka-ca.pem");
        std::fs::write(&ca_file, &local.ca_pem).unwrap();
        let certificate = CertificateDer::from(local.der.clone());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(local.key_der.clone()));
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

/// A certificate for 127.0.0.1 that a new CA of its own signed.
pub struct LocalCertificate {
    pub ca_pem: String,
    pub pem: String,
    pub der: Vec<u8>,
    pub key_pem: String,
    pub key_der: Vec<u8>,
}

impl LocalCertificate {
    pub fn new() -> Self {
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
        Self {
            ca_pem: ca.pem(),
            pem: certificate.pem(),
            der: certificate.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}
