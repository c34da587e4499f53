//! The cluster CA and the per-role certificates the operator issues when a
//! `RuLakeCluster` names no `tls.clusterSecretRef`, so mutual TLS between
//! the roles is on without cert-manager.
//!
//! Two Secrets, both owned by the cluster: `<cluster>-cluster-ca` holds the
//! CA's certificate and key and is never mounted; `<cluster>-cluster-certs`
//! holds the CA bundle (`ca.crt`) and a certificate and key per role
//! (`meta.crt`, `meta.key`, ...), of which each pod mounts its own role's.
//! Meta certificates name `*.<cluster>-meta.<ns>.svc`, shard certificates
//! `*.<cluster>-shard.<ns>.svc` (the addresses peers dial); every
//! certificate serves both as a server and as a client identity.
//!
//! Rotation, checked on every reconcile (at least every 5 minutes):
//! - a role certificate lives [`LEAF_VALIDITY`] and is issued again once
//!   less than [`LEAF_RENEW_BEFORE`] is left, or when it is missing,
//!   unreadable, or signed by a CA nobody trusts any more. Pods reload the
//!   files on their own; the CA is unchanged, so peers accept the new
//!   certificate at once;
//! - the CA lives [`CA_VALIDITY`] and is replaced once less than
//!   [`CA_RENEW_BEFORE`] is left. The bundle then holds the new and the
//!   old CA, and the role certificates move to the new CA only after
//!   [`CA_SWITCH_GRACE`], by which time every pod trusts it: kubelets
//!   update mounted Secrets within about a minute, not all at once.
//!
//! Everything here is a function of what the Secrets hold and the time,
//! so tests drive it with any clock. Certificates are read back with the
//! few DER fields rotation needs (`der`), not a full X.509 parser.

mod der;

use crate::manifests::Role;
use k8s_openapi::jiff::{tz::TimeZone, SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::collections::BTreeMap;

const DAY: i64 = 24;
/// How long a role certificate is valid.
pub const LEAF_VALIDITY: SignedDuration = SignedDuration::from_hours(90 * DAY);
/// A role certificate with less than this left is issued again.
pub const LEAF_RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * DAY);
/// How long the cluster CA is valid.
pub const CA_VALIDITY: SignedDuration = SignedDuration::from_hours(3650 * DAY);
/// A CA with less than this left is replaced.
pub const CA_RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(365 * DAY);
/// How long a new CA is in the bundle before certificates it signed are
/// used.
pub const CA_SWITCH_GRACE: SignedDuration = SignedDuration::from_mins(10);

/// CA Secret: the CA certificate.
pub const CA_CERT: &str = "ca.crt";
/// CA Secret: the CA key.
pub const CA_KEY: &str = "ca.key";
/// CA Secret: the CA it replaced, trusted until it expires.
pub const PREVIOUS_CA: &str = "previous-ca.crt";
/// Certificates Secret: the CA bundle every pod trusts.
pub const BUNDLE: &str = "ca.crt";

/// The roles that get a certificate.
pub const ROLES: [Role; 3] = [Role::Meta, Role::Shard, Role::Coordinator];

/// A Secret's data.
pub type Data = BTreeMap<String, Vec<u8>>;

/// What can go wrong issuing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or the key.
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// A validity date is out of range.
    #[error("certificate validity out of range: {0}")]
    Date(#[from] k8s_openapi::jiff::Error),
    /// A certificate just issued does not read back (a bug, not an input).
    #[error("an issued {0} certificate does not read back")]
    Unreadable(&'static str),
}

/// Whom the certificates are for.
#[derive(Clone, Debug)]
pub struct Names {
    /// The RuLakeCluster's name.
    pub cluster: String,
    /// Its namespace.
    pub namespace: String,
}

impl Names {
    /// The DNS names `role`'s certificate covers: the names peers dial.
    pub fn dns(&self, role: Role) -> Vec<String> {
        let (c, ns) = (&self.cluster, &self.namespace);
        match role {
            Role::Meta => vec![format!("*.{c}-meta.{ns}.svc")],
            Role::Shard => vec![format!("*.{c}-shard.{ns}.svc")],
            Role::Coordinator => vec![format!("{c}-coordinator.{ns}.svc"), format!("{c}.{ns}.svc")],
        }
    }
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Sets the validity to whole UTC days around `from..until` (a day before
/// `from`, for clocks running behind).
fn set_validity(
    params: &mut CertificateParams,
    from: Timestamp,
    until: Timestamp,
) -> Result<(), CertError> {
    let day = |t: Timestamp| {
        let d = t.to_zoned(TimeZone::UTC).date();
        // jiff dates are always valid calendar dates within rcgen's range.
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    params.not_before = day(from.checked_sub(SignedDuration::from_hours(DAY))?);
    params.not_after = day(until);
    Ok(())
}

fn pem_der(pem: &[u8]) -> Option<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem).ok()
}

/// When the (first) certificate of a PEM bundle expires.
pub fn expiry(pem: &[u8]) -> Option<Timestamp> {
    let der = pem_der(pem)?;
    der::cert_info(&der).map(|i| i.not_after)
}

/// A CA the operator can sign with.
struct Ca {
    cert_pem: String,
    key_pem: String,
    cn: String,
    subject: Vec<u8>,
    not_after: Timestamp,
}

/// A certificate that is only trusted (the CA a new one replaced).
struct Trusted {
    pem: String,
    subject: Vec<u8>,
    not_after: Timestamp,
}

/// A role's certificate and key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    issuer: Vec<u8>,
    not_after: Timestamp,
}

impl Trusted {
    fn load(pem: &[u8]) -> Option<Self> {
        let der = pem_der(pem)?;
        let info = der::cert_info(&der)?;
        Some(Trusted {
            pem: String::from_utf8(pem.to_vec()).ok()?,
            subject: info.subject.to_vec(),
            not_after: info.not_after,
        })
    }
}

/// Whether `key_pem` is the key of the certificate whose public key is
/// `spki`.
fn key_matches(key_pem: &str, spki: &[u8]) -> bool {
    KeyPair::from_pem(key_pem).is_ok_and(|k| k.subject_public_key_info() == spki)
}

impl Ca {
    fn generate(names: &Names, now: Timestamp) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        // Unique per CA (its key's first bytes): which CA signed a
        // certificate is told by name, so a successor must not share it.
        let id: String = key
            .public_key_raw()
            .iter()
            .skip(1)
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let cn = format!(
            "rulake cluster CA {}/{} {id}",
            names.namespace, names.cluster
        );
        params.distinguished_name = common_name(&cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = ca_key_usages();
        set_validity(&mut params, now, now.checked_add(CA_VALIDITY)?)?;
        let cert = params.self_signed(&key)?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        // Read back through the same path a stored CA takes.
        Ca::load(cert_pem.as_bytes(), key_pem.as_bytes()).ok_or(CertError::Unreadable("CA"))
    }

    /// A stored CA, if it is whole: readable, its key matching, its
    /// subject the one-common-name form the operator writes (so that the
    /// issuer it signs with encodes to the same bytes).
    fn load(cert_pem: &[u8], key_pem: &[u8]) -> Option<Self> {
        let der = pem_der(cert_pem)?;
        let info = der::cert_info(&der)?;
        let key_pem = String::from_utf8(key_pem.to_vec()).ok()?;
        let cn = der::common_name(info.subject)?;
        if info.subject != der::name_with_common_name(&cn).as_slice()
            || !key_matches(&key_pem, info.spki)
        {
            return None;
        }
        Some(Ca {
            cert_pem: String::from_utf8(cert_pem.to_vec()).ok()?,
            key_pem,
            cn,
            subject: info.subject.to_vec(),
            not_after: info.not_after,
        })
    }

    fn trusted(&self) -> Trusted {
        Trusted {
            pem: self.cert_pem.clone(),
            subject: self.subject.clone(),
            not_after: self.not_after,
        }
    }

    /// Issues `role`'s certificate.
    fn sign(&self, names: &Names, role: Role, now: Timestamp) -> Result<Leaf, CertError> {
        let mut ca = CertificateParams::default();
        ca.distinguished_name = common_name(&self.cn);
        ca.key_usages = ca_key_usages();
        let issuer = Issuer::new(ca, KeyPair::from_pem(&self.key_pem)?);

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.dns(role))?;
        params.distinguished_name = common_name(&format!(
            "rulake {} {}/{}",
            role.as_str(),
            names.namespace,
            names.cluster
        ));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        set_validity(&mut params, now, now.checked_add(LEAF_VALIDITY)?)?;
        let cert = params.signed_by(&key, &issuer)?;
        let not_after = der::cert_info(cert.der())
            .ok_or(CertError::Unreadable(role.as_str()))?
            .not_after;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: self.subject.clone(),
            not_after,
        })
    }
}

fn ca_key_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ]
}

impl Leaf {
    fn load(cert_pem: &[u8], key_pem: &[u8]) -> Option<Self> {
        let der = pem_der(cert_pem)?;
        let info = der::cert_info(&der)?;
        let key_pem = String::from_utf8(key_pem.to_vec()).ok()?;
        if !key_matches(&key_pem, info.spki) {
            return None;
        }
        Some(Leaf {
            cert_pem: String::from_utf8(cert_pem.to_vec()).ok()?,
            key_pem,
            issuer: info.issuer.to_vec(),
            not_after: info.not_after,
        })
    }
}

/// What the two Secrets hold now (`None`: the Secret does not exist).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stored<'a> {
    /// The CA Secret's data.
    pub ca: Option<&'a Data>,
    /// The certificates Secret's data.
    pub certs: Option<&'a Data>,
    /// The certificates Secret's [`crate::manifests::CA_TRUSTED_SINCE`].
    pub trusted_since: Option<Timestamp>,
}

/// What to write, if anything.
#[derive(Debug, Default)]
pub struct Plan {
    /// New contents of the CA Secret.
    pub ca: Option<Data>,
    /// New contents of the certificates Secret, and since when its bundle
    /// holds the current CA.
    pub certs: Option<(Data, Timestamp)>,
    /// What was issued, in words, for the event (`CA`, `meta`, ...).
    pub issued: Vec<&'static str>,
    /// The earliest expiry of the role certificates in force.
    pub expires: Option<Timestamp>,
}

/// Decides what the Secrets must hold at `now`, issuing what is missing,
/// unreadable or due; see the module doc for the rules.
pub fn plan(names: &Names, stored: Stored<'_>, now: Timestamp) -> Result<Plan, CertError> {
    let mut issued = Vec::new();
    let get = |data: Option<&Data>, key: &str| data.and_then(|d| d.get(key)).cloned();
    let loaded = match (get(stored.ca, CA_CERT), get(stored.ca, CA_KEY)) {
        (Some(cert), Some(key)) => Ca::load(&cert, &key),
        _ => None,
    };
    let mut previous = get(stored.ca, PREVIOUS_CA).and_then(|pem| Trusted::load(&pem));
    let ca = match loaded {
        Some(ca) if ca.not_after.duration_since(now) > CA_RENEW_BEFORE => ca,
        Some(old) => {
            previous = Some(old.trusted());
            issued.push("CA (renewal)");
            Ca::generate(names, now)?
        }
        None => {
            // Nothing trusts a lost CA's successor yet; nothing to phase.
            previous = None;
            issued.push("CA");
            Ca::generate(names, now)?
        }
    };
    let previous = previous.filter(|p| p.not_after > now && p.subject != ca.subject);

    let mut ca_data = Data::from([
        (CA_CERT.to_string(), ca.cert_pem.clone().into_bytes()),
        (CA_KEY.to_string(), ca.key_pem.clone().into_bytes()),
    ]);
    let mut bundle = ca.cert_pem.clone();
    if let Some(p) = &previous {
        ca_data.insert(PREVIOUS_CA.into(), p.pem.clone().into_bytes());
        bundle.push_str(&p.pem);
    }

    let stored_bundle = get(stored.certs, BUNDLE).unwrap_or_default();
    let already_trusted = String::from_utf8_lossy(&stored_bundle).contains(ca.cert_pem.trim());
    let trusted_since = match (already_trusted, stored.trusted_since) {
        (true, Some(since)) => since,
        _ => now,
    };
    let switch = now.duration_since(trusted_since) >= CA_SWITCH_GRACE;

    let mut certs = Data::from([(BUNDLE.to_string(), bundle.into_bytes())]);
    let mut expires: Option<Timestamp> = None;
    for role in ROLES {
        let (crt, key) = (
            format!("{}.crt", role.as_str()),
            format!("{}.key", role.as_str()),
        );
        let kept = match (get(stored.certs, &crt), get(stored.certs, &key)) {
            (Some(c), Some(k)) => Leaf::load(&c, &k),
            _ => None,
        };
        let keep = kept.filter(|leaf| {
            if leaf.issuer == ca.subject {
                leaf.not_after.duration_since(now) > LEAF_RENEW_BEFORE
            } else {
                // Signed by the CA being replaced: kept until every pod
                // trusts the new one.
                let by_previous = previous.as_ref().is_some_and(|p| p.subject == leaf.issuer);
                by_previous && !switch && leaf.not_after > now
            }
        });
        let leaf = match keep {
            Some(leaf) => leaf,
            None => {
                issued.push(role.as_str());
                ca.sign(names, role, now)?
            }
        };
        expires = Some(expires.map_or(leaf.not_after, |e| e.min(leaf.not_after)));
        certs.insert(crt, leaf.cert_pem.into_bytes());
        certs.insert(key, leaf.key_pem.into_bytes());
    }

    Ok(Plan {
        ca: (stored.ca != Some(&ca_data)).then_some(ca_data),
        certs: (stored.certs != Some(&certs) || stored.trusted_since != Some(trusted_since))
            .then_some((certs, trusted_since)),
        issued,
        expires,
    })
}

#[cfg(test)]
mod tests;
