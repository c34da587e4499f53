//! Status conditions shared by both resources, following the Kubernetes API
//! conventions: `Ready`, `Progressing` and `Degraded`, each with a CamelCase
//! reason, a message and the generation it was computed for.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The resource serves what its spec asks for.
pub const CONDITION_READY: &str = "Ready";
/// The operator is moving the resource towards its spec.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// The resource serves, but not as asked (a dead node, no leader, ...).
pub const CONDITION_DEGRADED: &str = "Degraded";

/// A condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell (e.g. the admin API did not answer).
    Unknown,
}

impl ConditionStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    /// `True` when `b` holds, else `False`.
    pub fn from_bool(b: bool) -> Self {
        if b {
            Self::True
        } else {
            Self::False
        }
    }
}

/// Sets condition `type_` in `conditions`, keeping its `lastTransitionTime`
/// when the status did not change (so the time says when it last flipped).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status = status.as_str();
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match previous {
        Some(i) if conditions[i].status == status => conditions[i].last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let condition = Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// Sets Ready and Progressing False for `reason`: the resource does not
/// serve, and the operator is not moving it on by itself (it waits for a
/// change, or for a failed step to be retried).
pub fn set_not_ready(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    for type_ in [CONDITION_READY, CONDITION_PROGRESSING] {
        set_condition(
            conditions,
            type_,
            ConditionStatus::False,
            reason,
            message,
            generation,
        );
    }
}

/// A status holding the conventional conditions, so code shared by both
/// reconcilers can set them.
pub trait HasConditions {
    /// The status's `conditions` list.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
}

impl HasConditions for super::RuLakeClusterStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

impl HasConditions for super::RuLakeCollectionStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_kept_while_status_holds() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            CONDITION_READY,
            ConditionStatus::False,
            "Starting",
            "a",
            Some(1),
        );
        let mut first = conditions[0].clone();
        first.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        conditions[0] = first;
        set_condition(
            &mut conditions,
            CONDITION_READY,
            ConditionStatus::False,
            "Waiting",
            "b",
            Some(2),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
        assert_eq!(conditions[0].reason, "Waiting");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(
            &mut conditions,
            CONDITION_READY,
            ConditionStatus::True,
            "Serving",
            "c",
            Some(2),
        );
        assert_ne!(
            conditions[0].last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
        assert_eq!(conditions[0].status, "True");
    }
}
