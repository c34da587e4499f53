//! Token verification: which key, which algorithm, which claims.
//!
//! Keys come from the `jwt` section: one key file (HS256 secret or RS256
//! PEM, the original form, optionally with a `kid`), a JWKS file (RFC 7517:
//! `RSA` keys with `n`/`e` for RS256, `oct` keys with `k` for HS256), or
//! both. Several keys let an issuer rotate: it publishes the next key, signs
//! with it, and the old one is dropped later, each step a file change the
//! server picks up without a restart.
//!
//! A token's `kid` header selects its key; an unknown `kid` is refused, and
//! so is a token without `kid` when there is more than one key to choose
//! from (trying every key would let a token pick the weakest). Each key
//! verifies only its own algorithm, so an RSA public key can never be used
//! as an HMAC secret. `exp` is required; `nbf` (when present) and `exp` are
//! checked with the same few seconds of clock leeway; and a token may live
//! at most `max_token_lifetime_secs` (from `iat`, or from now when it has
//! none), so a leaked long-lived token is refused even if its issuer
//! signed it.

use crate::config::Loader;
use crate::AuthError;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashSet;

/// The longest token lifetime accepted when the file names none: one day.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// Shortest HS256 secret accepted, in bytes.
const MIN_SECRET_BYTES: usize = 32;

/// Shortest RSA modulus accepted from a JWKS, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// The `jwt` section of the configuration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileJwt {
    /// `HS256` or `RS256`: the algorithm of the one key below.
    algorithm: Option<String>,
    /// HS256: file holding the shared secret.
    secret_file: Option<String>,
    /// RS256: PEM file of the issuer's public key.
    public_key_file: Option<String>,
    /// The `kid` of the key above, if its tokens carry one.
    kid: Option<String>,
    /// A JSON Web Key Set (RFC 7517) file: keys selected by `kid`.
    jwks_file: Option<String>,
    issuer: String,
    audience: String,
    /// Longest accepted `exp - iat` (or `exp - now` without `iat`).
    max_token_lifetime_secs: Option<u64>,
}

/// One verifying key.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    /// Issuer, audience, required claims and this key's one algorithm.
    validation: Validation,
}

/// Every key tokens may be signed with, and the checks they get.
pub(crate) struct Jwt {
    keys: Vec<Key>,
    max_lifetime_secs: u64,
}

/// Claims RuLake reads from a token.
#[derive(Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    /// Grants, as in the key file (`read:docs*`, ...).
    #[serde(default)]
    pub(crate) rulake: Vec<String>,
    exp: f64,
    iat: Option<f64>,
}

/// One entry of a JWKS; fields RuLake does not use (`x5c`, ...) are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    k: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// Decoded length of unpadded (or padded) base64url text.
fn b64_len(s: &str) -> usize {
    s.trim_end_matches('=').len() * 3 / 4
}

fn config(msg: impl Into<String>) -> AuthError {
    AuthError::Config(msg.into())
}

impl Jwt {
    /// The keys and checks a `jwt` section describes; files it names are
    /// read through `files`. Keys of a JWKS that RuLake cannot use (other
    /// algorithms, encryption keys) are skipped with a warning.
    pub(crate) fn load(
        j: FileJwt,
        files: &mut Loader,
        warnings: &mut Vec<String>,
    ) -> Result<Jwt, AuthError> {
        let mut keys = Vec::new();
        let validation = |alg: Algorithm| {
            let mut v = Validation::new(alg);
            v.set_issuer(&[&j.issuer]);
            v.set_audience(&[&j.audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            v.validate_exp = true;
            v.validate_nbf = true;
            v.leeway = LEEWAY_SECS;
            v
        };
        match (j.algorithm.as_deref(), &j.secret_file, &j.public_key_file) {
            (None, None, None) => {
                if j.kid.is_some() {
                    return Err(config(
                        "jwt.kid names the key of secret_file or public_key_file",
                    ));
                }
            }
            (Some("HS256"), Some(file), None) => {
                let secret = files.read(file)?;
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(config(format!(
                        "the HS256 secret must be at least {MIN_SECRET_BYTES} bytes"
                    )));
                }
                keys.push(Key {
                    kid: j.kid.clone(),
                    key: DecodingKey::from_secret(&secret),
                    validation: validation(Algorithm::HS256),
                });
            }
            (Some("RS256"), None, Some(file)) => {
                let key = DecodingKey::from_rsa_pem(&files.read(file)?)
                    .map_err(|e| config(format!("{file}: {e}")))?;
                keys.push(Key {
                    kid: j.kid.clone(),
                    key,
                    validation: validation(Algorithm::RS256),
                });
            }
            (Some("HS256"), ..) => return Err(config("HS256 needs secret_file (only)")),
            (Some("RS256"), ..) => return Err(config("RS256 needs public_key_file (only)")),
            (Some(other), ..) => {
                return Err(config(format!("jwt algorithm {other:?}: HS256 or RS256")))
            }
            (None, ..) => return Err(config(
                "jwt.algorithm (HS256 or RS256) must say what secret_file or public_key_file holds",
            )),
        }
        if let Some(file) = &j.jwks_file {
            let set: JwkSet = serde_json::from_slice(&files.read(file)?)
                .map_err(|e| config(format!("{file}: not a JSON Web Key Set: {e}")))?;
            let before = keys.len();
            for (i, jwk) in set.keys.into_iter().enumerate() {
                match jwk_key(jwk, i, file)? {
                    Ok((kid, key, alg)) => keys.push(Key {
                        kid: Some(kid),
                        key,
                        validation: validation(alg),
                    }),
                    Err(skipped) => warnings.push(skipped),
                }
            }
            if keys.len() == before {
                return Err(config(format!(
                    "{file}: no usable key (RS256 RSA keys or HS256 oct keys, each with a kid)"
                )));
            }
        }
        if keys.is_empty() {
            return Err(config(
                "jwt needs a key: secret_file, public_key_file or jwks_file",
            ));
        }
        let mut kids = HashSet::new();
        for kid in keys.iter().filter_map(|k| k.kid.as_deref()) {
            if !kids.insert(kid) {
                return Err(config(format!("two keys have kid {kid:?}")));
            }
        }
        let max_lifetime_secs = j
            .max_token_lifetime_secs
            .unwrap_or(DEFAULT_MAX_TOKEN_LIFETIME_SECS);
        if max_lifetime_secs == 0 {
            return Err(config("max_token_lifetime_secs must be positive"));
        }
        Ok(Jwt {
            keys,
            max_lifetime_secs,
        })
    }

    /// The claims of a token signed by one of the keys and valid now.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let refused = |m: &str| AuthError::Refused(format!("token: {m}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused("malformed header"))?;
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                .ok_or_else(|| refused("unknown key id (kid)"))?,
            None => match self.keys.as_slice() {
                [only] => only,
                _ => return Err(refused("no key id (kid), and the server has several keys")),
            },
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => refused("expired"),
                ErrorKind::ImmatureSignature => refused("not valid yet (nbf)"),
                ErrorKind::InvalidSignature => refused("bad signature"),
                ErrorKind::InvalidAlgorithm => refused("wrong algorithm for its key"),
                ErrorKind::InvalidIssuer => refused("wrong issuer"),
                ErrorKind::InvalidAudience => refused("wrong audience"),
                ErrorKind::MissingRequiredClaim(c) => refused(&format!("no {c} claim")),
                _ => refused(&e.to_string()),
            },
        )?;
        let claims = data.claims;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        // A future iat would shorten the measured lifetime: count from now.
        let start = claims.iat.map_or(now, |iat| iat.min(now));
        let lifetime = claims.exp - start;
        if lifetime > self.max_lifetime_secs as f64 {
            return Err(refused(&format!(
                "lives {:.0} s, over this server's maximum of {} s",
                lifetime, self.max_lifetime_secs
            )));
        }
        Ok(claims)
    }
}

/// One JWKS entry as a key, or why it is skipped (`Ok(Err(..))`); entries
/// that are malformed rather than merely unusable are errors.
fn jwk_key(
    jwk: Jwk,
    i: usize,
    file: &str,
) -> Result<Result<(String, DecodingKey, Algorithm), String>, AuthError> {
    let at = format!("{file}: key {i}");
    let Some(kid) = jwk.kid.filter(|k| !k.is_empty()) else {
        return Err(config(format!("{at}: every key needs a kid")));
    };
    let at = format!("{file}: key {kid:?}");
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(Err(format!("{at}: skipped, not a signing key")));
    }
    match (jwk.kty.as_str(), jwk.alg.as_deref()) {
        ("RSA", None | Some("RS256")) => {
            let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
                return Err(config(format!("{at}: an RSA key needs n and e")));
            };
            if b64_len(n) < MIN_RSA_MODULUS_BYTES {
                return Err(config(format!(
                    "{at}: RSA keys must have at least 2048 bits"
                )));
            }
            let key =
                DecodingKey::from_rsa_components(n, e).map_err(|e| config(format!("{at}: {e}")))?;
            Ok(Ok((kid, key, Algorithm::RS256)))
        }
        ("oct", None | Some("HS256")) => {
            let Some(k) = jwk.k else {
                return Err(config(format!("{at}: an oct key needs k")));
            };
            if b64_len(&k) < MIN_SECRET_BYTES {
                return Err(config(format!(
                    "{at}: HS256 secrets must be at least {MIN_SECRET_BYTES} bytes"
                )));
            }
            let jwk = jsonwebtoken::jwk::Jwk {
                common: Default::default(),
                algorithm: jsonwebtoken::jwk::AlgorithmParameters::OctetKey(
                    jsonwebtoken::jwk::OctetKeyParameters {
                        key_type: jsonwebtoken::jwk::OctetKeyType::Octet,
                        value: k,
                    },
                ),
            };
            let key = DecodingKey::from_jwk(&jwk).map_err(|e| config(format!("{at}: {e}")))?;
            Ok(Ok((kid, key, Algorithm::HS256)))
        }
        (kty, alg) => Ok(Err(format!(
            "{at}: skipped, {kty} {} keys are not supported (RS256 and HS256 are)",
            alg.unwrap_or("(no alg)")
        ))),
    }
}
