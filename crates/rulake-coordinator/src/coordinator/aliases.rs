//! Aliases: names that stand for a collection.
//!
//! Why aliases are resolved from this process's applied catalog view on
//! every call, never cached: a switch of several aliases is one catalog
//! commit, so every query sees either all of the old targets or all of the
//! new ones, and a client can re-point traffic without a restart.

use super::Coordinator;
use crate::{CoordinatorError, Result};
use rulake_catalog::Command;
use std::collections::BTreeMap;

impl Coordinator {
    /// The collection a name or alias stands for.
    pub fn resolve(&self, name: &str) -> Result<String> {
        resolve_in(&self.inner.view.read().catalog, name)
    }

    /// Point a new alias at a collection.
    pub async fn create_alias(&self, alias: &str, collection: &str) -> Result<()> {
        self.write(Command::CreateAlias {
            alias: alias.to_owned(),
            collection: collection.to_owned(),
        })
        .await?;
        Ok(())
    }

    /// Remove an alias.
    pub async fn delete_alias(&self, alias: &str) -> Result<()> {
        self.write(Command::DeleteAlias {
            alias: alias.to_owned(),
        })
        .await?;
        Ok(())
    }

    /// Re-point existing aliases, all in one catalog commit.
    pub async fn switch_aliases(&self, switches: BTreeMap<String, String>) -> Result<()> {
        if switches.is_empty() {
            return Err(CoordinatorError::InvalidArgument(
                "no aliases to switch".into(),
            ));
        }
        self.write(Command::SwitchAliases { switches }).await?;
        Ok(())
    }

    /// Alias → collection.
    pub fn aliases(&self) -> BTreeMap<String, String> {
        self.inner.view.read().catalog.aliases.clone()
    }
}

/// The collection `name` stands for in `cat`. Callers that then read the
/// collection's record resolve and read under one view of the catalog: a
/// drop between two views would leave them a name with no record.
pub(crate) fn resolve_in(cat: &rulake_catalog::Catalog, name: &str) -> Result<String> {
    if let Some(target) = cat.aliases.get(name) {
        return Ok(target.clone());
    }
    if cat.collections.contains_key(name) {
        return Ok(name.to_owned());
    }
    Err(CoordinatorError::NotFound {
        kind: "collection or alias",
        name: name.to_owned(),
    })
}
