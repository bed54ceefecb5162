//! TLS with rustls: what a process presents and whom it trusts, built once
//! from PEM text, and the handshakes on both ends of a connection.
//!
//! As in Dask, a peer's certificate must chain to the cluster's CA, and the
//! host name in it is not compared with the address dialled: workers
//! advertise addresses chosen at run time, so the CA is what says who
//! belongs to the cluster. A server with a CA asks every caller for a
//! certificate signed by it (mutual TLS) unless told that callers may come
//! without one (they still need the token).

use std::fmt;
use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;

use crate::stream::Stream;

/// The PEM text a process's TLS is made from.
#[derive(Clone, Default)]
pub struct TlsPem {
    /// The certificate authority peers' certificates must chain to.
    pub ca: Option<Vec<u8>>,
    /// This process's certificate chain (its own first).
    pub cert: Option<Vec<u8>>,
    /// The private key of `cert`.
    pub key: Option<Vec<u8>>,
    /// A server refuses callers without a certificate signed by the CA.
    pub mutual: bool,
}

/// Why TLS could not be set up, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate in the {0} PEM text")]
    NoCertificate(&'static str),
    #[error("the {what} PEM text could not be read: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("a TLS certificate needs its private key too (and a key its certificate)")]
    Unpaired,
    #[error(
        "TLS needs a CA certificate (tls_ca_file / --tls-ca-file) to check the peer's certificate"
    )]
    NoCa,
    #[error("this process serves TLS but has no certificate and key of its own")]
    NoServerCertificate,
    #[error("rustls refused the TLS configuration: {0}")]
    Rustls(#[from] Error),
}

/// How a process speaks TLS, or not at all (the default); cheap to clone.
#[derive(Clone, Default)]
pub struct Tls(Option<Arc<Configs>>);

struct Configs {
    /// For connections this process opens.
    client: tokio_rustls::TlsConnector,
    /// For connections it accepts, if it has a certificate to serve with.
    server: Option<tokio_rustls::TlsAcceptor>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Tls(off)"),
            Some(c) => write!(f, "Tls(on, serves: {})", c.server.is_some()),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Plain TCP.
    pub fn off() -> Tls {
        Tls(None)
    }

    /// TLS from PEM text: a CA is required; a certificate and key make
    /// this process able to serve TLS and to prove itself to servers.
    pub fn new(pem: &TlsPem) -> Result<Tls, TlsError> {
        let ca = pem.ca.as_deref().ok_or(TlsError::NoCa)?;
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca, "CA")? {
            roots.add(cert)?;
        }
        let roots = Arc::new(roots);
        let own = match (&pem.cert, &pem.key) {
            (Some(c), Some(k)) => Some((certificates(c, "certificate")?, private_key(k)?)),
            (None, None) => None,
            _ => return Err(TlsError::Unpaired),
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Pem {
                what: "CA",
                reason: e.to_string(),
            })?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(verifier)));
        let client = match &own {
            Some((certs, key)) => builder.with_client_auth_cert(certs.clone(), key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        let server = match own {
            None => None,
            Some((certs, key)) => {
                let callers = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let callers = if pem.mutual {
                    callers
                } else {
                    callers.allow_unauthenticated()
                };
                let callers = callers.build().map_err(|e| TlsError::Pem {
                    what: "CA",
                    reason: e.to_string(),
                })?;
                let config = rustls::ServerConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()?
                    .with_client_cert_verifier(callers)
                    .with_single_cert(certs, key)?;
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
            }
        };
        Ok(Tls(Some(Arc::new(Configs {
            client: tokio_rustls::TlsConnector::from(Arc::new(client)),
            server,
        }))))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The scheme of the addresses this process serves and dials.
    pub fn scheme(&self) -> &'static str {
        crate::addr::scheme(self.is_on())
    }

    /// Checks that a process without certificates to serve with is not
    /// asked to serve TLS.
    pub fn can_serve(&self) -> Result<(), TlsError> {
        match &self.0 {
            Some(c) if c.server.is_none() => Err(TlsError::NoServerCertificate),
            _ => Ok(()),
        }
    }

    /// Opens a connection to `addr` (`host:port`, with or without a
    /// scheme), with a TLS handshake if this process speaks TLS.
    pub async fn connect(&self, addr: &str) -> io::Result<Stream> {
        let addr = crate::addr::strip_scheme(addr);
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let Some(configs) = &self.0 else {
            return Ok(Stream::Tcp(tcp));
        };
        let tls = configs
            .client
            .connect(server_name(addr), tcp)
            .await
            .map_err(|e| explained(e, "the TLS handshake failed"))?;
        Ok(Stream::from(tokio_rustls::TlsStream::Client(tls)))
    }

    /// The server's side of a connection just accepted.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        let _ = tcp.set_nodelay(true);
        match self.0.as_ref().and_then(|c| c.server.as_ref()) {
            None => Ok(Stream::Tcp(tcp)),
            Some(acceptor) => {
                let tls = acceptor.accept(tcp).await?;
                Ok(Stream::from(tokio_rustls::TlsStream::Server(tls)))
            }
        }
    }
}

/// The name rustls is given for `host:port` (not compared with the
/// certificate, see the module's documentation, but sent as SNI).
fn server_name(addr: &str) -> ServerName<'static> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(|c| c == '[' || c == ']');
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("shoal").expect("a valid DNS name"))
}

/// `e` with a hint for the mistakes users make most with TLS, told apart
/// by the rustls error inside it (or a connection cut mid-handshake).
pub fn explained(e: io::Error, what: &str) -> io::Error {
    use rustls::AlertDescription as Alert;
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<Error>());
    let hint = match inner {
        Some(Error::AlertReceived(Alert::CertificateRequired)) => {
            "; the other side requires a certificate of this side (tls_client_cert/tls_client_key, --tls-cert/--tls-key)"
        }
        Some(
            Error::AlertReceived(Alert::UnknownCA | Alert::BadCertificate)
            | Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ),
        ) => "; the certificates are not signed by the same CA (tls_ca_file, --tls-ca-file)",
        Some(Error::InvalidMessage(_) | Error::InappropriateMessage { .. }) => NOT_TLS,
        None if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ) =>
        {
            NOT_TLS
        }
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what}: {e}{hint}"))
}

const NOT_TLS: &str =
    "; the other side does not speak TLS: use a tcp:// address without TLS options";

/// Every certificate in a PEM text (at least one).
fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what));
    }
    Ok(certs)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: "private key",
        reason: e.to_string(),
    })
}

/// Checks a server's certificate against the CA like rustls does, except
/// for the name in it (see the module's documentation).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let checked =
            self.0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match checked {
            Err(Error::InvalidCertificate(
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
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A new CA and a certificate it signed, for every role of one cluster
/// (Dask's `Security.temporary()`): `(ca, cert, key)` as PEM text.
pub fn temporary() -> Result<(String, String, String), rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "shoal temporary CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "shoal".to_string()])?;
    leaf.distinguished_name.push(DnType::CommonName, "shoal");
    leaf.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf = leaf.signed_by(&key, &ca, &ca_key)?;
    Ok((ca.pem(), leaf.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn pem(mutual: bool) -> TlsPem {
        let (ca, cert, key) = temporary().unwrap();
        TlsPem {
            ca: Some(ca.into_bytes()),
            cert: Some(cert.into_bytes()),
            key: Some(key.into_bytes()),
            mutual,
        }
    }

    /// Serves one connection with `server`, dials it with `client`, and
    /// returns what the client read back (the server echoes 5 bytes).
    async fn echo(server: Tls, client: Tls) -> io::Result<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let serve = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut s = server.accept(tcp).await?;
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await?;
            s.write_all(&buf).await?;
            s.flush().await?;
            io::Result::Ok(())
        });
        let mut s = client.connect(&addr).await?;
        s.write_all(b"hello").await?;
        s.flush().await?;
        let mut back = vec![0u8; 5];
        let read = s.read_exact(&mut back).await.map(|_| back);
        let _ = serve.await;
        read
    }

    #[tokio::test]
    async fn both_sides_with_the_same_ca_talk() {
        let tls = Tls::new(&pem(true)).unwrap();
        assert_eq!(echo(tls.clone(), tls).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn a_mutual_server_refuses_a_caller_without_a_certificate() {
        let p = pem(true);
        let server = Tls::new(&p).unwrap();
        let bare = Tls::new(&TlsPem {
            ca: p.ca.clone(),
            ..TlsPem::default()
        })
        .unwrap();
        let err = echo(server, bare.clone()).await.unwrap_err();
        assert!(err.to_string().contains("CertificateRequired"), "{err}");
        let open = Tls::new(&TlsPem { mutual: false, ..p }).unwrap();
        assert_eq!(echo(open, bare).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn another_ca_is_refused() {
        let ours = Tls::new(&pem(true)).unwrap();
        let theirs = Tls::new(&pem(true)).unwrap();
        let err = echo(ours, theirs).await.unwrap_err();
        assert!(err.to_string().contains("same CA"), "{err}");
    }

    #[tokio::test]
    async fn plain_tcp_to_a_tls_server_fails_without_a_crash() {
        let tls = Tls::new(&pem(true)).unwrap();
        // The server answers plain bytes with a TLS alert, which a plain
        // reader of frames names (see `frame::looks_like_tls`).
        let got = echo(tls.clone(), Tls::off()).await.unwrap();
        assert_eq!(got[..2], [0x15, 0x03]);
        let err = echo(Tls::off(), tls).await.unwrap_err();
        assert!(err.to_string().contains("does not speak TLS"), "{err}");
    }

    #[test]
    fn bad_pem_is_refused_with_a_reason() {
        let p = pem(true);
        let no_ca = TlsPem {
            ca: None,
            ..p.clone()
        };
        assert!(matches!(Tls::new(&no_ca), Err(TlsError::NoCa)));
        let unpaired = TlsPem {
            key: None,
            ..p.clone()
        };
        assert!(matches!(Tls::new(&unpaired), Err(TlsError::Unpaired)));
        let garbage = TlsPem {
            ca: Some(b"not a certificate".to_vec()),
            ..p.clone()
        };
        assert!(matches!(
            Tls::new(&garbage),
            Err(TlsError::NoCertificate("CA"))
        ));
        let bad_key = TlsPem {
            key: Some(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec()),
            ..p
        };
        assert!(Tls::new(&bad_key).is_err());
        let client_only = Tls::new(&TlsPem {
            ca: pem(true).ca,
            ..TlsPem::default()
        })
        .unwrap();
        assert!(matches!(
            client_only.can_serve(),
            Err(TlsError::NoServerCertificate)
        ));
    }

    #[test]
    fn server_names_come_from_the_host() {
        assert_eq!(server_name("localhost:80").to_str(), "localhost");
        assert_eq!(server_name("10.0.0.1:80").to_str(), "10.0.0.1");
        assert_eq!(server_name("[::1]:80").to_str(), "::1");
    }
}
