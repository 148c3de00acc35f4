//! The server's certificate authority: created at first start in `<data-dir>/ca/` (`ca.crt`,
//! `ca.key` mode 0600), it signs host certificates (client auth, the host name as common name)
//! and the server's own certificate (server auth, [`crate::SERVER_NAME`] and the names given).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// Clock skew allowed between hosts: certificates are valid from this long before issue.
pub const SKEW: Duration = Duration::from_secs(120);
/// The CA's own lifetime.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The server certificate's lifetime (a new one is made at every start).
const SERVER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The issued certificate, PEM.
    pub cert_pem: String,
    /// Lowercase hex, as [`crate::identity::PeerIdentity::serial`].
    pub serial: String,
    /// Seconds since the Unix epoch.
    pub not_after: u64,
}

/// The CA: its certificate and the key that signs.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn random_serial() -> (SerialNumber, String) {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // no leading zero byte, so the hex form is stable
    (SerialNumber::from_slice(&b), hex::encode(b))
}

fn at(secs_from_now: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::seconds(secs_from_now)
}

impl Ca {
    /// A new CA (memory only).
    pub fn generate() -> anyhow::Result<Ca> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "softvpc");
        dn.push(DnType::CommonName, "softvpc CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial().0);
        params.not_before = at(-(SKEW.as_secs() as i64));
        params.not_after = at(CA_LIFETIME.as_secs() as i64);
        let cert = params.self_signed(&key).context("signing the CA")?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads the CA from `dir` (`ca.crt`, `ca.key`), creating both if neither exists.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Ca> {
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        match (crt.exists(), key.exists()) {
            (true, true) => {
                let cert_pem = std::fs::read_to_string(&crt)
                    .with_context(|| format!("reading {}", crt.display()))?;
                let key_pem = std::fs::read_to_string(&key)
                    .with_context(|| format!("reading {}", key.display()))?;
                Self::from_pem(&cert_pem, &key_pem)
                    .with_context(|| format!("loading the CA from {}", dir.display()))
            }
            (false, false) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let ca = Self::generate()?;
                crate::write_file(&key, ca.issuer.key().serialize_pem().as_bytes(), 0o600)
                    .with_context(|| format!("writing {}", key.display()))?;
                crate::write_file(&crt, ca.cert_pem.as_bytes(), 0o644)
                    .with_context(|| format!("writing {}", crt.display()))?;
                tracing::info!(dir = %dir.display(), ca_hash = %hex::encode(ca.hash()), "CA created");
                Ok(ca)
            }
            _ => bail!(
                "{} holds only one of ca.crt and ca.key: restore the other (or remove both to start a new CA, which every host must then join again)",
                dir.display()
            ),
        }
    }

    /// A CA from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::from_pem(key_pem).context("parsing the CA key")?;
        let der = pem_to_der(cert_pem)?;
        let issuer = Issuer::from_ca_cert_der(&der, key).context("parsing the CA certificate")?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            cert_der: der,
            issuer,
        })
    }

    /// The CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the CA certificate (DER): what join tokens carry.
    pub fn hash(&self) -> [u8; 32] {
        crate::token::cert_hash(&self.cert_der)
    }

    /// Signs a host certificate for `host` over the public key of `csr_pem` (the request's
    /// names and extensions are ignored: the server decides them), valid for `ttl`.
    pub fn issue_host(&self, csr_pem: &str, host: &str, ttl: Duration) -> anyhow::Result<Issued> {
        if csr_pem.len() > 16 * 1024 {
            bail!("certificate request too large");
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| anyhow::anyhow!("bad certificate request: {e}"))?;
        let (params, serial, not_after) = host_params(host, ttl)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .context("signing the host certificate")?;
        Ok(Issued {
            cert_pem: cert.pem(),
            serial,
            not_after,
        })
    }

    /// A host certificate and its new key (PEM), valid from `from_now` for `ttl` (tests make
    /// expired and not-yet-valid ones with it).
    pub fn issue_host_with_key(
        &self,
        host: &str,
        from_now: i64,
        ttl: Duration,
    ) -> anyhow::Result<(Issued, String)> {
        let key = KeyPair::generate()?;
        let (mut params, serial, _) = host_params(host, ttl)?;
        params.not_before = at(from_now);
        params.not_after = at(from_now + ttl.as_secs() as i64);
        let cert = params.signed_by(&key, &self.issuer)?;
        let not_after = params.not_after.unix_timestamp().max(0) as u64;
        Ok((
            Issued {
                cert_pem: cert.pem(),
                serial,
                not_after,
            },
            key.serialize_pem(),
        ))
    }

    /// The server's certificate chain (leaf, then the CA) and key, for [`crate::SERVER_NAME`],
    /// `localhost`, 127.0.0.1 and `names` (DNS names or IP addresses).
    pub fn issue_server(
        &self,
        names: &[String],
    ) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "softvpc");
        dn.push(DnType::CommonName, crate::SERVER_NAME);
        params.distinguished_name = dn;
        let mut sans = vec![
            SanType::DnsName(crate::SERVER_NAME.try_into()?),
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        ];
        for n in names {
            let san = match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    n.as_str()
                        .try_into()
                        .with_context(|| format!("bad server name {n:?}"))?,
                ),
            };
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(random_serial().0);
        params.not_before = at(-(SKEW.as_secs() as i64));
        params.not_after = at(SERVER_LIFETIME.as_secs() as i64);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            vec![cert.der().clone(), self.cert_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }
}

fn host_params(host: &str, ttl: Duration) -> anyhow::Result<(CertificateParams, String, u64)> {
    if !crate::identity::valid_host_name(host) {
        bail!("invalid host name {host:?}");
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "softvpc");
    dn.push(DnType::OrganizationalUnitName, crate::identity::HOST_OU);
    dn.push(DnType::CommonName, host);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (sn, serial) = random_serial();
    params.serial_number = Some(sn);
    params.not_before = at(-(SKEW.as_secs() as i64));
    params.not_after = at(ttl.as_secs() as i64);
    params.use_authority_key_identifier_extension = true;
    let not_after = params.not_after.unix_timestamp().max(0) as u64;
    Ok((params, serial, not_after))
}

/// The first certificate of a PEM text, as DER.
pub fn pem_to_der(pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("no certificate in PEM text: {e}"))
}

/// A new key pair and a certificate request for it (PEM): what an agent sends to join or renew.
pub fn new_key_and_csr(host: &str) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key.serialize_pem(), csr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_persists_and_signs_hosts() {
        let dir = std::env::temp_dir().join(format!("svpc-ca-{}", rand::random::<u64>()));
        let ca = Ca::load_or_create(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Ca::load_or_create(&dir).unwrap();
        assert_eq!(ca.hash(), again.hash());
        let (_key, csr) = new_key_and_csr("whatever").unwrap();
        let issued = again
            .issue_host(&csr, "host-1", Duration::from_secs(60))
            .unwrap();
        let der = pem_to_der(&issued.cert_pem).unwrap();
        let id = crate::identity::parse(&der).unwrap();
        assert_eq!(id.host, "host-1");
        assert_eq!(id.serial, issued.serial);
        assert_eq!(id.not_after, issued.not_after);
        assert!(again
            .issue_host("garbage", "host-1", Duration::from_secs(60))
            .is_err());
        assert!(again
            .issue_host(&csr, "bad name", Duration::from_secs(60))
            .is_err());
        std::fs::remove_file(dir.join("ca.crt")).unwrap();
        assert!(
            Ca::load_or_create(&dir).is_err(),
            "half a CA must not be replaced"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
