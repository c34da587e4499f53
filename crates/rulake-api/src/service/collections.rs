//! `CollectionService`: collections and their aliases, the calls that
//! change the catalog. Kept apart from search and data because they answer
//! to the catalog's rules (admin rights, names, aliases), not the engine's.
//!
//! What these calls show is only what the caller may read: listings leave
//! out the collections it may not read and the aliases whose name or
//! collection it may not read, and a description names only the aliases it
//! may read. Source options are never shown (see `convert`).

use super::call::{Call, Scope};
use super::Api;
use crate::convert::{consistency_from, def_from, view_to};
use crate::status::{invalid, to_status};
use rulake_auth::Perm;
use rulake_catalog::CollectionChanges;
use rulake_coordinator::CollectionView;
use rulake_proto::v1 as pb;
use std::collections::BTreeMap;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl pb::collection_service_server::CollectionService for Api {
    async fn create_collection(
        &self,
        req: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CreateCollectionResponse>, Status> {
        self.handle(
            req,
            "CreateCollection",
            Perm::Admin,
            Scope::Deferred,
            move |r, call| async move {
                // The name is in the spec, which must be there first.
                let spec = r.spec.ok_or_else(|| invalid("spec is required"))?;
                call.authorize(&spec.name)?;
                let def = def_from(spec)?;
                let name = def.record.name.clone();
                let view = call.run(self.coord.create_collection(def)).await?;
                // Named once it exists: before, it would count as unknown.
                call.label(&name);
                Ok(pb::CreateCollectionResponse {
                    info: Some(view_to(view)),
                })
            },
        )
        .await
    }

    async fn drop_collection(
        &self,
        req: Request<pb::DropCollectionRequest>,
    ) -> Result<Response<pb::DropCollectionResponse>, Status> {
        self.handle(
            req,
            "DropCollection",
            Perm::Admin,
            Scope::Collection(|r| &r.name),
            move |r, call| async move {
                call.run(self.coord.drop_collection(&r.name)).await?;
                Ok(pb::DropCollectionResponse {})
            },
        )
        .await
    }

    async fn list_collections(
        &self,
        req: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        self.handle(
            req,
            "ListCollections",
            Perm::Read,
            Scope::Deferred,
            move |_, call| async move {
                // Only what the caller may read: the rest stays unseen.
                let collections = self
                    .coord
                    .list()
                    .into_iter()
                    .filter(|v| call.permits(&v.record.name))
                    .map(|v| view_to(readable(v, &call)))
                    .collect();
                Ok(pb::ListCollectionsResponse { collections })
            },
        )
        .await
    }

    async fn describe_collection(
        &self,
        req: Request<pb::DescribeCollectionRequest>,
    ) -> Result<Response<pb::DescribeCollectionResponse>, Status> {
        self.handle(
            req,
            "DescribeCollection",
            Perm::Read,
            Scope::Collection(|r| &r.name),
            move |r, call| async move {
                // Answered from the catalog in memory: nothing to time out.
                // The collection the caller was authorized on, alias or not.
                let view = self
                    .coord
                    .describe(call.target(&r.name))
                    .map_err(to_status)?;
                Ok(pb::DescribeCollectionResponse {
                    info: Some(view_to(readable(view, &call))),
                })
            },
        )
        .await
    }

    async fn alter_collection(
        &self,
        req: Request<pb::AlterCollectionRequest>,
    ) -> Result<Response<pb::AlterCollectionResponse>, Status> {
        self.handle(
            req,
            "AlterCollection",
            Perm::Admin,
            Scope::Collection(|r| &r.name),
            move |r, call| async move {
                let changes = CollectionChanges {
                    replication: r.replication_factor,
                    consistency: match r.consistency {
                        Some(c) => Some(consistency_from(Some(c))?),
                        None => None,
                    },
                    rerank: r.rerank,
                    nprobe: r.nprobe,
                };
                let view = call
                    .run(self.coord.alter_collection(&r.name, changes))
                    .await?;
                Ok(pb::AlterCollectionResponse {
                    info: Some(view_to(readable(view, &call))),
                })
            },
        )
        .await
    }

    async fn create_alias(
        &self,
        req: Request<pb::CreateAliasRequest>,
    ) -> Result<Response<pb::CreateAliasResponse>, Status> {
        self.handle(
            req,
            "CreateAlias",
            Perm::Admin,
            Scope::Deferred,
            move |r, call| async move {
                // The names are in the alias, which must be there first.
                let a = r.alias.ok_or_else(|| invalid("alias is required"))?;
                call.authorize(&a.alias)?;
                call.authorize(&a.collection)?;
                call.run(self.coord.create_alias(&a.alias, &a.collection))
                    .await?;
                Ok(pb::CreateAliasResponse {})
            },
        )
        .await
    }

    async fn delete_alias(
        &self,
        req: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        self.handle(
            req,
            "DeleteAlias",
            Perm::Admin,
            Scope::Alias(|r| &r.alias),
            move |r, call| async move {
                call.run(self.coord.delete_alias(&r.alias)).await?;
                Ok(pb::DeleteAliasResponse {})
            },
        )
        .await
    }

    async fn switch_aliases(
        &self,
        req: Request<pb::SwitchAliasesRequest>,
    ) -> Result<Response<pb::SwitchAliasesResponse>, Status> {
        self.handle(
            req,
            "SwitchAliases",
            Perm::Admin,
            Scope::Deferred,
            move |r, call| async move {
                // Each pair is authorized, then checked for a repeat, in order.
                let mut switches = BTreeMap::new();
                for a in r.aliases {
                    call.authorize(&a.alias)?;
                    call.authorize(&a.collection)?;
                    if switches.insert(a.alias.clone(), a.collection).is_some() {
                        return Err(invalid(format!("alias {:?} appears twice", a.alias)));
                    }
                }
                call.run(self.coord.switch_aliases(switches)).await?;
                Ok(pb::SwitchAliasesResponse {})
            },
        )
        .await
    }

    async fn describe_generation(
        &self,
        req: Request<pb::DescribeGenerationRequest>,
    ) -> Result<Response<pb::DescribeGenerationResponse>, Status> {
        self.handle(
            req,
            "DescribeGeneration",
            Perm::Read,
            Scope::Collection(|r| &r.name),
            move |r, call| async move {
                let target = call.target(&r.name);
                call.run(self.coord.describe_generation(target, &r.generation))
                    .await
            },
        )
        .await
    }

    async fn list_aliases(
        &self,
        req: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        self.handle(
            req,
            "ListAliases",
            Perm::Read,
            Scope::Deferred,
            move |_, call| async move {
                let aliases = self
                    .coord
                    .aliases()
                    .into_iter()
                    // Both names: an alias must not tell where it points.
                    .filter(|(a, c)| call.permits(a) && call.permits(c))
                    .map(|(alias, collection)| pb::Alias { alias, collection })
                    .collect();
                Ok(pb::ListAliasesResponse { aliases })
            },
        )
        .await
    }
}

/// `view` with only the aliases the caller may read: the others' names are
/// not the caller's to learn.
fn readable(mut view: CollectionView, call: &Call<'_>) -> CollectionView {
    view.aliases.retain(|a| call.may_read(a));
    view
}
