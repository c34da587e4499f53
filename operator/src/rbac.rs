//! The operator's Kubernetes permissions, as data: the Helm chart's
//! ClusterRole (or, when the operator watches one namespace, its Role
//! there) must grant exactly these rules (checked by the chart test), and
//! every request the reconcilers make in the mocked-API tests must be
//! covered by them (checked by the mock server on each request).
//!
//! Every rule is on a namespaced resource, so one table serves both modes:
//! nothing here needs a cluster-wide grant once the operator watches a
//! single namespace. The leader Lease lives in the operator's own
//! namespace whatever it watches, so its rule is a table of its own
//! ([`OWN_NAMESPACE_RULES`]), granted by a Role there: a ClusterRole would
//! let the operator write Leases in every namespace. Secrets are the sensitive grant: `get` reads the
//! admin key and the stored cluster CA (names the operator cannot know in
//! advance, so `resourceNames` cannot narrow it); there is no `list` or
//! `watch`, so the operator reads only Secrets a cluster names or owns.
//!
//! Why a table: least privilege drifts in both directions as reconcilers
//! change, a forgotten verb fails only in a real cluster and a stale one
//! fails nowhere. With the table between the code and the chart, a new
//! call fails a unit test until it is granted, and a grant stays only
//! while the table says which call needs it.

/// One rule of the ClusterRole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Resource, with `/subresource` when it is one.
    pub resource: &'static str,
    /// Verbs, in the order the chart lists them.
    pub verbs: &'static [&'static str],
    /// Restricted to these object names (empty: any).
    pub names: &'static [&'static str],
    /// The calls that need it.
    pub why: &'static str,
}

const fn rule(
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    why: &'static str,
) -> Rule {
    Rule {
        group,
        resource,
        verbs,
        names: &[],
        why,
    }
}

/// Server-side apply of an object that does not exist yet creates it, so
/// every applied kind needs `create` next to `patch`.
const APPLIED: &[&str] = &["list", "watch", "create", "patch"];

/// Everything the operator may do.
pub const RULES: &[Rule] = &[
    rule(
        "rulake.io",
        "rulakeclusters",
        &["get", "list", "watch"],
        "the cluster controller watches them; a collection reads its cluster",
    ),
    rule(
        "rulake.io",
        "rulakecollections",
        &["list", "watch", "patch"],
        "the collection controller watches them and patches its finalizer",
    ),
    rule(
        "rulake.io",
        "rulakeclusters/status",
        &["patch"],
        "status applied by the cluster reconciler",
    ),
    rule(
        "rulake.io",
        "rulakecollections/status",
        &["patch"],
        "status applied by the collection reconciler",
    ),
    rule(
        "apps",
        "statefulsets",
        &["get", "list", "watch", "create", "patch"],
        "meta and shard StatefulSets: applied and watched; the shard set read before a scale-down",
    ),
    rule("apps", "deployments", APPLIED, "the coordinator Deployment"),
    rule("", "services", APPLIED, "the cluster's Services"),
    rule("", "configmaps", APPLIED, "the cluster's ConfigMap"),
    rule(
        "",
        "secrets",
        &["get", "create", "patch"],
        "the issued cluster CA and role certificates (read, applied); the admin key (read)",
    ),
    rule(
        "networking.k8s.io",
        "networkpolicies",
        APPLIED,
        "the NetworkPolicies guarding the meta and shard ports",
    ),
    rule(
        "policy",
        "poddisruptionbudgets",
        APPLIED,
        "the meta, shard and coordinator budgets",
    ),
    rule(
        "",
        "pods",
        &["get"],
        "a new shard pod's readiness before it is admitted to placement",
    ),
    rule(
        "monitoring.coreos.com",
        "servicemonitors",
        &["create", "patch"],
        "the cluster's ServiceMonitor, applied (a 404 says the CRD is not installed)",
    ),
    rule(
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "Events about clusters and collections (a repeat patches its series)",
    ),
];

/// What the operator may do in its own namespace only.
pub const OWN_NAMESPACE_RULES: &[Rule] = &[rule(
    "coordination.k8s.io",
    "leases",
    &["get", "create", "patch"],
    "the leader Lease: read, created once, then renewed, taken over and released by \
     patches conditional on the version read",
)];

/// What one request to the API server needs: group, resource (with
/// subresource), verb and object name, from its method, path and query.
pub fn needs(method: &str, path: &str, query: &str) -> Option<(String, String, String, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, name) = match rest {
        [resource] => (resource.to_string(), String::new()),
        [resource, name] => (resource.to_string(), name.to_string()),
        [resource, name, sub] => (format!("{resource}/{sub}"), name.to_string()),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_empty()) {
        ("GET", true) if watch => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        _ => return None,
    };
    Some((group.to_string(), resource, verb.to_string(), name))
}

/// Whether [`RULES`] or [`OWN_NAMESPACE_RULES`] allow `verb` on
/// `group`/`resource` (object `name`).
pub fn allows(group: &str, resource: &str, verb: &str, name: &str) -> bool {
    RULES.iter().chain(OWN_NAMESPACE_RULES).any(|r| {
        r.group == group
            && r.resource == resource
            && r.verbs.contains(&verb)
            && (r.names.is_empty() || r.names.contains(&name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_verbs() {
        let n = |m, p, q| needs(m, p, q).unwrap();
        assert_eq!(
            n(
                "GET",
                "/apis/apps/v1/statefulsets",
                "watch=true&labelSelector=x"
            ),
            (
                "apps".into(),
                "statefulsets".into(),
                "watch".into(),
                String::new()
            )
        );
        assert_eq!(
            n("GET", "/api/v1/namespaces/ns/pods/p-0", ""),
            ("".into(), "pods".into(), "get".into(), "p-0".into())
        );
        assert_eq!(
            n(
                "PATCH",
                "/apis/rulake.io/v1alpha1/namespaces/ns/rulakeclusters/c/status",
                "fieldManager=x"
            ),
            (
                "rulake.io".into(),
                "rulakeclusters/status".into(),
                "patch".into(),
                "c".into()
            )
        );
        assert_eq!(
            n("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", "").2,
            "create"
        );
        assert!(allows("apps", "statefulsets", "get", "s"));
        assert!(!allows("apps", "deployments", "delete", "d"));
        assert!(!allows("", "secrets", "list", ""), "no listing Secrets");
        assert!(!allows(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "get",
            "servicemonitors.monitoring.coreos.com"
        ));
    }

    /// Every applied kind: patch and create go together.
    #[test]
    fn applied_kinds_can_be_created() {
        for r in RULES {
            if r.verbs.contains(&"patch") && !r.resource.contains('/') {
                let finalizer_only = r.resource == "rulakecollections";
                assert!(
                    finalizer_only || r.verbs.contains(&"create"),
                    "{} is applied: server-side apply creates it",
                    r.resource
                );
            }
        }
    }
}
