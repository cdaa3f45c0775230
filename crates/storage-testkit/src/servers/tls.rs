//! Certificates and credentials for throwaway servers that require TLS or a password.
//!
//! [`TestCerts::generate`] makes a fresh certificate authority and a server certificate it
//! signs for `127.0.0.1`, `::1` and `localhost`, with [rcgen](https://docs.rs/rcgen), and
//! writes them as PEM files: tests trust `ca_file` and connect with certificate
//! verification on. A second call makes an unrelated authority, for tests that check an
//! untrusted certificate is refused.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// How a throwaway server is secured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// The password clients must give (Redis `requirepass`; PostgreSQL: the `postgres`
    /// role's scram-sha-256 password).
    pub password: Option<String>,
    /// Whether the server accepts TLS connections only, with a certificate from a fresh
    /// [`TestCerts`] authority.
    pub tls: bool,
}

impl Security {
    /// A password, no TLS.
    pub fn password(password: impl Into<String>) -> Self {
        Security {
            password: Some(password.into()),
            tls: false,
        }
    }

    /// TLS, and a password if given.
    pub fn tls(password: Option<&str>) -> Self {
        Security {
            password: password.map(str::to_owned),
            tls: true,
        }
    }
}

/// PEM files of a test certificate authority and of a server certificate it signed.
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The authority's certificate: what clients trust.
    pub ca_file: PathBuf,
    /// The server's certificate, for `127.0.0.1`, `::1` and `localhost`.
    pub cert_file: PathBuf,
    /// The server's private key (mode 0600).
    pub key_file: PathBuf,
}

impl TestCerts {
    /// Generates an authority and a server certificate into `dir` (`ca.pem`,
    /// `server.pem`, `server.key`).
    pub fn generate(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("cannot create the certificate directory");
        let ca_key = KeyPair::generate().expect("cannot generate the CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "storage-testkit CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("cannot sign the CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("cannot generate the server key");
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])
        .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params
            .signed_by(&server_key, &issuer)
            .expect("cannot sign the server certificate");

        let certs = TestCerts {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
        };
        std::fs::write(&certs.ca_file, ca_cert.pem()).expect("cannot write ca.pem");
        std::fs::write(&certs.cert_file, server_cert.pem()).expect("cannot write server.pem");
        std::fs::write(&certs.key_file, server_key.serialize_pem())
            .expect("cannot write server.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&certs.key_file, std::fs::Permissions::from_mode(0o600))
                .expect("cannot restrict server.key");
        }
        certs
    }

    /// The PEM file of a fresh authority unrelated to any server: trusting it instead of
    /// the server's makes verification fail.
    pub fn untrusted_ca(dir: &Path) -> PathBuf {
        TestCerts::generate(dir).ca_file
    }
}

/// `text` percent-encoded for the user info of a URL (everything but unreserved
/// characters is escaped).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
