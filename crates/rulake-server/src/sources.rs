//! The source policy as a role takes it: flags, a policy file, and the
//! server's own files fenced off.
//!
//! Why every role that opens sources installs one at start (see
//! `rulake_lake::policy`): the prefixes are the operator's decision, and
//! the fences (data directory, managed files, keys, auth and policy files)
//! must hold even when an allowed prefix contains them. With neither
//! `--source-allow` nor `--source-policy`, only managed collections can be
//! created: the server opens nothing a caller names until told where the
//! lake is.

use anyhow::Context;
use rulake_lake::SourcePolicy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where sources may come from.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SourceArgs {
    /// A URL prefix sources may use (`s3://lake/`, `file:///data/lake/`);
    /// repeat or separate with commas. Nothing else is opened.
    #[arg(long, value_delimiter = ',', env = "RULAKE_SOURCE_ALLOW")]
    pub source_allow: Vec<String>,
    /// JSON file of allowed prefixes with the object-store options the
    /// server uses for each (endpoint, credentials, `allow_http`), which
    /// clients can never set: `{"allow": [{"prefix": "s3://lake/",
    /// "options": {"aws_endpoint": "http://minio:9000"}}]}`.
    #[arg(long, env = "RULAKE_SOURCE_POLICY")]
    pub source_policy: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    allow: Vec<PrefixRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixRule {
    prefix: String,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

impl SourceArgs {
    /// Build the policy these flags describe, fence `own_files` (the
    /// role's data directory, keys, auth config, managed URL), install it
    /// for the process, and say what it allows.
    pub fn install(&self, role: &str, own_files: &[Own<'_>]) -> anyhow::Result<()> {
        let mut policy = SourcePolicy::new();
        for prefix in &self.source_allow {
            policy = policy
                .allow(prefix, BTreeMap::new())
                .with_context(|| format!("--source-allow {prefix}"))?;
        }
        if let Some(path) = &self.source_policy {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--source-policy {}", path.display()))?;
            let file: PolicyFile = serde_json::from_str(&text)
                .with_context(|| format!("--source-policy {}", path.display()))?;
            for rule in file.allow {
                policy = policy
                    .allow(&rule.prefix, rule.options)
                    .with_context(|| format!("{}: prefix {}", path.display(), rule.prefix))?;
            }
            policy = policy.fence_path(path)?;
        }
        let policy = fenced(policy, own_files)?;
        let prefixes = policy.prefixes();
        if prefixes.is_empty() {
            eprintln!(
                "rulake {role}: no source prefix allowed (--source-allow): only managed collections can be created"
            );
        } else {
            eprintln!(
                "rulake {role}: sources allowed under {}",
                prefixes.join(", ")
            );
        }
        rulake_lake::policy::install(policy);
        Ok(())
    }
}

/// `policy` with `own_files` fenced off.
pub fn fenced(mut policy: SourcePolicy, own_files: &[Own<'_>]) -> anyhow::Result<SourcePolicy> {
    for own in own_files {
        policy = match own {
            Own::Path(p) => policy.fence_path(p),
            Own::Url(u) => policy.fence(u),
        }
        .with_context(|| format!("fencing the server's own files at {own:?}"))?;
    }
    Ok(policy)
}

/// The policy of where `CreateBackup` may write: under `allowed`, never
/// inside `own_files` (a backup inside the data directory dies with it,
/// and one under a managed prefix would be swept).
pub fn backup_policy(allowed: &[String], own_files: &[Own<'_>]) -> anyhow::Result<SourcePolicy> {
    let mut policy = SourcePolicy::new();
    for prefix in allowed {
        policy = policy
            .allow(prefix, BTreeMap::new())
            .with_context(|| format!("--backup-allow {prefix}"))?;
    }
    fenced(policy, own_files)
}

/// One of the server's own files or directories, never readable as a
/// source.
#[derive(Debug)]
pub enum Own<'a> {
    /// A local path.
    Path(&'a Path),
    /// A URL (a managed root on an object store).
    Url(&'a str),
}

/// The local paths among `paths`, as [`Own`]s.
pub fn own_paths<'a>(paths: impl IntoIterator<Item = Option<&'a PathBuf>>) -> Vec<Own<'a>> {
    paths
        .into_iter()
        .flatten()
        .map(|p| Own::Path(p.as_path()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_file_gives_prefixes_their_server_side_options() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sources.json");
        std::fs::write(
            &file,
            r#"{"allow": [{"prefix": "s3://lake/", "options": {"aws_endpoint": "http://minio:9000"}}]}"#,
        )
        .unwrap();
        let args = SourceArgs {
            source_allow: vec!["file:///srv/lake/".into()],
            source_policy: Some(file.clone()),
        };
        args.install("test", &own_paths([Some(&dir.path().to_path_buf())]))
            .unwrap();
        let policy = rulake_lake::policy::installed().unwrap();
        assert_eq!(
            policy.prefixes(),
            vec!["file:///srv/lake".to_owned(), "s3://lake/".to_owned()]
        );
        std::fs::write(&file, r#"{"allow": [], "extra": 1}"#).unwrap();
        assert!(args.install("test", &[]).is_err());
    }
}
