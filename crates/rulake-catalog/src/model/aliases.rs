//! Commands on aliases. An alias and a collection never share a name (a
//! name must resolve one way), and a switch moves every alias it names in
//! one command, so readers never see half of a blue/green cut-over.

use super::checks::check_name;
use super::{Applied, Catalog};
use crate::error::CommandError;
use std::collections::BTreeMap;

impl Catalog {
    /// [`super::Command::CreateAlias`].
    pub(super) fn create_alias(
        &mut self,
        alias: String,
        collection: String,
    ) -> Result<Applied, CommandError> {
        check_name("alias", &alias)?;
        self.collection_exists(&collection)?;
        if self.aliases.contains_key(&alias) {
            return Err(CommandError::AlreadyExists {
                what: "alias",
                name: alias,
            });
        }
        if self.collections.contains_key(&alias) {
            return Err(CommandError::Conflict(format!(
                "{alias:?} is already a collection"
            )));
        }
        self.aliases.insert(alias, collection);
        Ok(Applied::Done)
    }

    /// [`super::Command::DeleteAlias`].
    pub(super) fn delete_alias(&mut self, alias: String) -> Result<Applied, CommandError> {
        check_name("alias", &alias)?;
        if self.aliases.remove(&alias).is_none() {
            return Err(CommandError::NotFound {
                what: "alias",
                name: alias,
            });
        }
        Ok(Applied::Done)
    }

    /// [`super::Command::SwitchAliases`]: all aliases or none.
    pub(super) fn switch_aliases(
        &mut self,
        switches: BTreeMap<String, String>,
    ) -> Result<Applied, CommandError> {
        if switches.is_empty() {
            return Err(CommandError::InvalidField {
                field: "switches",
                reason: "must not be empty".into(),
            });
        }
        for (alias, target) in &switches {
            check_name("alias", alias)?;
            if !self.aliases.contains_key(alias) {
                return Err(CommandError::NotFound {
                    what: "alias",
                    name: alias.clone(),
                });
            }
            self.collection_exists(target)?;
        }
        self.aliases.extend(switches);
        Ok(Applied::Done)
    }
}
