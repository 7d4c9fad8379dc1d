//! The network's certificates: a local CA, a certificate per node, and certificates for any
//! other caller, all made with rcgen; and the TLS settings servers and clients build from them.
//!
//! A certificate names its holder in its subject's common name, in the canonical caller form
//! (`node:370100`, `institution:H37030000001`), so the server layer reads the caller from the
//! certificate the TLS handshake already checked against the network's CA.
//!
//! A PKI folder holds `ca.pem` and `ca.key`, and for each holder `<holder>.pem` and
//! `<holder>.key`, the holder's name with `-` for `:` (`node-370100.pem`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use yitong_core::Owner;
use yitong_rpc::Caller;

/// Days a node certificate is valid by default; renew before, with `yitong pki issue`.
pub const NODE_VALIDITY_DAYS: i64 = 397;
/// Days the network CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{0} already exists; a network's CA is made once")]
    Exists(PathBuf),
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    std::fs::write(path, text).map_err(io)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    let _ = secret;
    Ok(())
}

/// The file stem of a holder's certificate and key: `node-370100`.
pub fn file_stem(holder: &Caller) -> String {
    holder.to_string().replace(':', "-")
}

/// A PKI folder.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

/// When a certificate is valid, in days from now (negative for the past).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub from_days: i64,
    pub to_days: i64,
}

impl Validity {
    pub fn days(days: i64) -> Validity {
        Validity {
            from_days: -1,
            to_days: days,
        }
    }
}

impl Pki {
    pub fn at(dir: impl Into<PathBuf>) -> Pki {
        Pki { dir: dir.into() }
    }

    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert_path(&self, holder: &Caller) -> PathBuf {
        self.dir.join(format!("{}.pem", file_stem(holder)))
    }

    pub fn key_path(&self, holder: &Caller) -> PathBuf {
        self.dir.join(format!("{}.key", file_stem(holder)))
    }

    /// Makes the network's CA in an empty or new folder.
    pub fn init(dir: impl Into<PathBuf>, name: &str) -> Result<Pki, PkiError> {
        let pki = Pki::at(dir);
        std::fs::create_dir_all(&pki.dir).map_err(|source| PkiError::Io {
            action: "create",
            path: pki.dir.clone(),
            source,
        })?;
        if pki.ca_pem_path().exists() {
            return Err(PkiError::Exists(pki.ca_pem_path()));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = name_of(&format!("{name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, Validity::days(CA_VALIDITY_DAYS));
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        write(&pki.dir.join("ca.key"), &key.serialize_pem(), true)?;
        write(&pki.ca_pem_path(), &certificate.pem(), false)?;
        Ok(pki)
    }

    /// Issues `holder` a certificate from this CA, valid for `hosts` (DNS names or IP
    /// addresses, for servers) and usable as both a server and a client certificate.
    pub fn issue(
        &self,
        holder: &Caller,
        hosts: &[String],
        validity: Validity,
    ) -> Result<(), PkiError> {
        let ca_key = KeyPair::from_pem(&read(&self.dir.join("ca.key"))?)?;
        let issuer = Issuer::from_ca_cert_pem(&read(&self.ca_pem_path())?, ca_key)?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name = name_of(&holder.to_string());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, validity);
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &issuer)?;
        write(&self.key_path(holder), &key.serialize_pem(), true)?;
        write(&self.cert_path(holder), &certificate.pem(), false)?;
        Ok(())
    }

    fn identity(&self, holder: &Caller) -> Result<Identity, PkiError> {
        Ok(Identity::from_pem(
            read(&self.cert_path(holder))?,
            read(&self.key_path(holder))?,
        ))
    }

    fn ca(&self) -> Result<Certificate, PkiError> {
        Ok(Certificate::from_pem(read(&self.ca_pem_path())?))
    }

    /// A server of `owner`: its node certificate, and mutual TLS: every client presents a
    /// certificate of the network's CA, unexpired, or the handshake fails. The certificate
    /// names its caller, or (a gateway's) names none and the call carries an API key.
    pub fn server_tls(&self, owner: Owner) -> Result<ServerTlsConfig, PkiError> {
        Ok(ServerTlsConfig::new()
            .identity(self.identity(&Caller::Node(owner))?)
            .client_ca_root(self.ca()?)
            .client_auth_optional(false))
    }

    /// A client trusting only the network's CA, presenting `holder`'s certificate if given.
    pub fn client_tls(&self, holder: Option<&Caller>) -> Result<ClientTlsConfig, PkiError> {
        let config = ClientTlsConfig::new().ca_certificate(self.ca()?);
        Ok(match holder {
            Some(holder) => config.identity(self.identity(holder)?),
            None => config,
        })
    }
}

fn name_of(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Yitong");
    name.push(DnType::CommonName, common_name);
    name
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970");
    let shifted = |days: i64| {
        let span = std::time::Duration::from_secs(days.unsigned_abs() * 86_400);
        if days < 0 { now - span } else { now + span }
    };
    params.not_before = shifted(validity.from_days);
    params.not_after = shifted(validity.to_days);
}

/// The caller a certificate names in its subject's common name, if it is one.
pub fn caller_of_certificate(der: &[u8]) -> Option<Caller> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let common_name = certificate.subject().iter_common_name().next()?;
    common_name.as_str().ok()?.parse().ok()
}
