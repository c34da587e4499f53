//! What a client sends to prove who it is: nothing, an API key, or a bearer
//! token read from a file.
//!
//! A server run with `--auth-config` reads `authorization: Bearer <api key
//! or JWT>` on every call, so every call of a [`crate::Client`] carries it,
//! set by one interceptor. A token file is read again for every call: token
//! issuers (a sidecar, a Kubernetes projected volume) replace the file
//! before the token expires, and a long-running client must not keep a
//! stale one. The secret never appears in `Debug` output or error messages.

use std::path::{Path, PathBuf};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::Status;

/// Largest token file read, in bytes (a JWT is a few KiB at most).
const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;

/// The credential sent with every call.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No credential (a server without `--auth-config`, or one that lets
    /// anonymous callers in).
    #[default]
    None,
    /// An API key.
    ApiKey(String),
    /// A file holding a bearer token (a JWT), read again for every call.
    TokenFile(PathBuf),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Credentials::TokenFile(p) => f.debug_tuple("TokenFile").field(p).finish(),
        }
    }
}

/// Why a credential cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The token file cannot be read.
    #[error("token file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The key or token is empty or holds characters a header cannot carry.
    #[error("{0}: must be non-empty visible ASCII, as an HTTP header carries it")]
    Malformed(&'static str),
}

impl From<CredentialError> for Status {
    fn from(e: CredentialError) -> Status {
        // Nothing was sent: the call fails on the client, before the server.
        Status::failed_precondition(format!("client credential: {e}"))
    }
}

fn read_token(path: &Path) -> Result<String, CredentialError> {
    use std::io::Read;
    let err = |e: std::io::Error| CredentialError::Read {
        path: path.to_owned(),
        error: e.to_string(),
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(MAX_TOKEN_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(err)?;
    Ok(text.trim().to_owned())
}

fn bearer(secret: &str, what: &'static str) -> Result<MetadataValue<Ascii>, CredentialError> {
    if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CredentialError::Malformed(what));
    }
    let mut v = MetadataValue::try_from(format!("Bearer {secret}"))
        .map_err(|_| CredentialError::Malformed(what))?;
    v.set_sensitive(true);
    Ok(v)
}

impl Credentials {
    /// `--api-key` or `--token-file` as a command line gives them: the token
    /// file, if any, else the key, else nothing.
    pub fn from_options(api_key: Option<String>, token_file: Option<PathBuf>) -> Self {
        match (token_file, api_key) {
            (Some(p), _) => Credentials::TokenFile(p),
            (None, Some(k)) => Credentials::ApiKey(k),
            (None, None) => Credentials::None,
        }
    }

    /// The `authorization` header value to send now, if any.
    pub fn header(&self) -> Result<Option<MetadataValue<Ascii>>, CredentialError> {
        match self {
            Credentials::None => Ok(None),
            Credentials::ApiKey(k) => bearer(k.trim(), "the API key").map(Some),
            Credentials::TokenFile(p) => bearer(&read_token(p)?, "the token").map(Some),
        }
    }
}

/// The interceptor that puts the credential on every call.
#[derive(Clone, Debug, Default)]
pub struct Authorize {
    credentials: std::sync::Arc<Credentials>,
}

impl Authorize {
    /// Send `credentials` with every call.
    pub fn new(credentials: Credentials) -> Self {
        Authorize {
            credentials: std::sync::Arc::new(credentials),
        }
    }

    /// What is sent.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}

impl tonic::service::Interceptor for Authorize {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = self.credentials.header()? {
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn sent(c: Credentials) -> Result<Option<String>, Status> {
        let req = Authorize::new(c).call(tonic::Request::new(()))?;
        Ok(req
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()))
    }

    #[test]
    fn every_call_carries_the_credential_and_a_token_file_is_read_each_time() {
        assert_eq!(sent(Credentials::None).unwrap(), None);
        assert_eq!(
            sent(Credentials::ApiKey("k-1".into())).unwrap().as_deref(),
            Some("Bearer k-1")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "aaa.bbb.ccc\n").unwrap();
        let mut auth = Authorize::new(Credentials::TokenFile(path.clone()));
        let header = |a: &mut Authorize| {
            a.call(tonic::Request::new(()))
                .map(|r| r.metadata().get("authorization").cloned())
        };
        assert_eq!(header(&mut auth).unwrap().unwrap(), "Bearer aaa.bbb.ccc");
        std::fs::write(&path, "ddd.eee.fff").unwrap();
        assert_eq!(header(&mut auth).unwrap().unwrap(), "Bearer ddd.eee.fff");
        std::fs::remove_file(&path).unwrap();
        let e = header(&mut auth).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().contains("token file"), "{}", e.message());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_bad_ones_are_not_sent() {
        let c = Credentials::ApiKey("super-secret".into());
        assert!(!format!("{c:?}").contains("super-secret"));
        assert!(!format!("{:?}", Authorize::new(c)).contains("super-secret"));
        for bad in ["", "two words", "new\nline", "naïve"] {
            let e = sent(Credentials::ApiKey(bad.into())).unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{bad:?}");
            assert!(!e.message().contains(bad) || bad.is_empty());
        }
        assert!(matches!(
            Credentials::from_options(Some("k".into()), Some("f".into())),
            Credentials::TokenFile(_)
        ));
        assert!(matches!(
            Credentials::from_options(Some("k".into()), None),
            Credentials::ApiKey(_)
        ));
    }
}
