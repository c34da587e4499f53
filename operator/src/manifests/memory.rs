//! Shard pods' memory, set from the cache budget so the kubelet never kills
//! a node for holding what its budget allows.
//!
//! A shard's resident memory is its accounted cache bytes times a factor
//! (allocator slack, list capacity) plus a fixed base (runtime, gRPC,
//! catalog follower); loads count inside the budget while they last. At
//! rest the factor is about 1.2, but a node evicting and reloading under
//! queries holds evicted partitions a search still reads and pages freed
//! within the allocator's decay: under the limit, such a node peaked at
//! 1.3 × its budget plus the base (chaos/tests/memory_limit.rs). So the pod
//! is given the limit at which the shard's own default budget (a share of
//! what the limit leaves after the base) equals the budget asked for: the
//! same headroom a node sizing itself would keep. The figures are the
//! shard's own (`rulake-cache`'s `memory` module, measured in
//! docs/BENCHMARKS.md, "Memory"), repeated here because the operator
//! depends on no engine crate; change both together.
//!
//! The request equals the limit (memory is not overcommitted: a shard that
//! fills its budget uses it), and a larger figure the user gives in
//! `shards.resources` wins over the derived one; a larger request raises
//! the limit with it, never past it.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Share of its memory limit (after the base) a shard gives its cache by
/// default.
pub const DEFAULT_BUDGET_FRACTION: f64 = 0.6;

/// Resident bytes of a shard holding nothing, with headroom.
pub const FIXED_BASE_BYTES: u64 = 64 << 20;

/// Memory a shard with a cache budget of `cache_bytes` needs, rounded up
/// to a whole MiB.
pub fn shard_memory_bytes(cache_bytes: u64) -> u64 {
    let needed = (cache_bytes as f64 / DEFAULT_BUDGET_FRACTION).ceil() as u64 + FIXED_BASE_BYTES;
    needed.div_ceil(1 << 20) << 20
}

/// The shard container's resources: `user`'s, with memory request and
/// limit raised to what a budget of `cache_bytes` needs.
pub fn shard_resources(
    user: Option<ResourceRequirements>,
    cache_bytes: u64,
) -> ResourceRequirements {
    let derived = Quantity(format!("{}Mi", shard_memory_bytes(cache_bytes) >> 20));
    let mut r = user.unwrap_or_default();
    // The larger of the user's figure and `floor`, keeping the user's
    // spelling when it wins.
    let at_least = |given: Option<&Quantity>, floor: &Quantity| -> Quantity {
        let bytes = |q: Option<&Quantity>| q.and_then(super::quantity_bytes).unwrap_or(0);
        match given {
            Some(g) if bytes(Some(g)) >= bytes(Some(floor)) => g.clone(),
            _ => floor.clone(),
        }
    };
    let requests = r.requests.get_or_insert_with(Default::default);
    let request = at_least(requests.get("memory"), &derived);
    requests.insert("memory".into(), request.clone());
    // The limit is never below the request: the API server refuses such a
    // pod, so a user's larger request raises the limit with it.
    let limits = r.limits.get_or_insert_with(Default::default);
    let limit = at_least(limits.get("memory"), &request);
    limits.insert("memory".into(), limit);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn memory(r: &ResourceRequirements) -> (String, String) {
        (
            r.requests.as_ref().unwrap()["memory"].0.clone(),
            r.limits.as_ref().unwrap()["memory"].0.clone(),
        )
    }

    #[test]
    fn memory_is_the_budget_over_the_default_share_plus_the_base() {
        // 4 GiB: 4096 / 0.6 = 6826.7 MiB, + 64 MiB, rounded up.
        assert_eq!(shard_memory_bytes(4 << 30), 6891 << 20);
        let r = shard_resources(None, 4 << 30);
        assert_eq!(memory(&r), ("6891Mi".into(), "6891Mi".into()));
    }

    #[test]
    fn a_larger_user_figure_wins_and_a_smaller_one_is_raised() {
        let cpu = Quantity("2".into());
        let user = ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), cpu.clone()),
                ("memory".to_string(), Quantity("1Gi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("16Gi".into()),
            )])),
            ..Default::default()
        };
        let r = shard_resources(Some(user), 4 << 30);
        assert_eq!(memory(&r), ("6891Mi".into(), "16Gi".into()));
        assert_eq!(r.requests.as_ref().unwrap()["cpu"], cpu);
    }

    #[test]
    fn a_larger_request_without_a_limit_raises_the_limit_with_it() {
        // The quickstart's shards: 1 GiB requested, 512 MiB of cache
        // (918 MiB derived). A limit below the request is refused by the
        // API server, and was by Docker in the container harness.
        let user = ResourceRequirements {
            requests: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("1Gi".into()),
            )])),
            ..Default::default()
        };
        let r = shard_resources(Some(user), 512 << 20);
        assert_eq!(memory(&r), ("1Gi".into(), "1Gi".into()));
    }
}
