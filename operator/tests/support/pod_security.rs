//! What every pod RuLake runs must say about its privileges: not root,
//! nothing to escalate to, no capabilities, a read-only root filesystem,
//! and writable volumes only where RuLake writes.

use k8s_openapi::api::core::v1::PodSpec;

/// Where a pod may mount something writable: the data directory (emptyDir
/// or PVC) and /tmp. TLS material is mounted read-only.
const WRITABLE: &[&str] = &["/var/lib/rulake", "/tmp"];

/// Checks `pod` (named `what` in failures).
pub fn assert_hardened(what: &str, pod: &PodSpec) {
    let pod_ctx = pod.security_context.clone().unwrap_or_default();
    let volumes = pod.volumes.clone().unwrap_or_default();
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let name = format!("{what}, container {}", c.name);
        let ctx = c
            .security_context
            .clone()
            .unwrap_or_else(|| panic!("{name}: no securityContext"));
        assert!(
            ctx.run_as_non_root.or(pod_ctx.run_as_non_root) == Some(true),
            "{name}: runAsNonRoot"
        );
        let user = ctx.run_as_user.or(pod_ctx.run_as_user);
        assert!(
            user.is_none_or(|u| u != 0),
            "{name}: runs as root ({user:?})"
        );
        assert_eq!(
            ctx.read_only_root_filesystem,
            Some(true),
            "{name}: readOnlyRootFilesystem"
        );
        assert_eq!(
            ctx.allow_privilege_escalation,
            Some(false),
            "{name}: allowPrivilegeEscalation"
        );
        assert_ne!(ctx.privileged, Some(true), "{name}: privileged");
        let caps = ctx.capabilities.clone().unwrap_or_default();
        assert_eq!(
            caps.drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{name}: drops all capabilities"
        );
        assert!(
            caps.add.unwrap_or_default().is_empty(),
            "{name}: adds capabilities"
        );
        for m in c.volume_mounts.iter().flatten() {
            if m.read_only == Some(true) {
                continue;
            }
            let volume = volumes
                .iter()
                .find(|v| v.name == m.name)
                .map(|v| {
                    (
                        v.empty_dir.is_some(),
                        v.persistent_volume_claim.is_some(),
                        v.secret.is_some() || v.config_map.is_some(),
                    )
                })
                // A volume from a StatefulSet's volumeClaimTemplates.
                .unwrap_or((false, true, false));
            assert!(
                !volume.2,
                "{name}: {} mounts a Secret or ConfigMap writable",
                m.mount_path
            );
            assert!(
                WRITABLE.contains(&m.mount_path.as_str()) && (volume.0 || volume.1),
                "{name}: writable mount {} is not the data directory or /tmp on an emptyDir or PVC",
                m.mount_path
            );
        }
    }
}
