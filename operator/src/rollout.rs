//! How a new pod template rolls out: replica by replica, or all stopped first.
//!
//! The rule: roll replica by replica, unless the running consumer group uses the other kind of
//! rebalance protocol than the new pods will. Kafka refuses a member whose assignors share no
//! protocol with the group's (`InconsistentGroupProtocol`), so a cooperative pod cannot join
//! a group of eager ones, or the other way round: a rolling update would start new pods that
//! never become ready, and stall. That happens once, when the assignment strategy changes
//! (upgrading from a consumer whose default was eager, or a user changing
//! `partition.assignment.strategy`); the Deployment then stops every old pod before starting
//! the new ones, and the next check, seeing the group on the new protocol, rolls again.
//!
//! A group with no members, or one that could not be read, sets no constraint.

use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The librdkafka property naming the consumers' assignors.
pub const ASSIGNMENT_STRATEGY: &str = "partition.assignment.strategy";

/// What the consumer uses when `partition.assignment.strategy` is not set (fetch-consumer's
/// default, not librdkafka's).
pub const CONSUMER_DEFAULT_ASSIGNOR: &str = "cooperative-sticky";

/// The two kinds of group rebalance protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Every member gives up all its partitions at each rebalance (range, roundrobin).
    Eager,
    /// Members give up only what moves (cooperative-sticky).
    Cooperative,
}

impl Protocol {
    /// The protocol of an assignor name, or of a `partition.assignment.strategy` list
    /// (librdkafka refuses a list that mixes kinds, so its first entry decides).
    pub fn of_assignors(list: &str) -> Option<Protocol> {
        let first = list.split(',').map(str::trim).find(|s| !s.is_empty())?;
        Some(if first == "cooperative-sticky" {
            Protocol::Cooperative
        } else {
            Protocol::Eager
        })
    }
}

/// How the Deployment replaces its pods when their template changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    /// Kubernetes' default: a quarter of the replicas at a time.
    Rolling,
    /// Stop every old pod, then start the new ones.
    Recreate,
}

/// The rollout for pods using `pods`, while the group runs `running` (`None`: no members, or
/// unknown).
pub fn choose(running: Option<Protocol>, pods: Protocol) -> Rollout {
    match running {
        Some(running) if running != pods => Rollout::Recreate,
        _ => Rollout::Rolling,
    }
}

/// The Deployment strategy for `rollout`. Rolling is spelled out with Kubernetes' defaults: a
/// server-applied Deployment keeps fields nobody owns, and a defaulted `rollingUpdate` left in
/// place would make the switch to `Recreate` invalid.
pub fn strategy(rollout: Rollout) -> DeploymentStrategy {
    match rollout {
        Rollout::Rolling => DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::String("25%".into())),
                max_unavailable: Some(IntOrString::String("25%".into())),
            }),
        },
        Rollout::Recreate => DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignor_lists_are_eager_unless_cooperative_sticky() {
        assert_eq!(
            Protocol::of_assignors("cooperative-sticky"),
            Some(Protocol::Cooperative)
        );
        assert_eq!(
            Protocol::of_assignors(" range, roundrobin"),
            Some(Protocol::Eager)
        );
        assert_eq!(Protocol::of_assignors("roundrobin"), Some(Protocol::Eager));
        assert_eq!(Protocol::of_assignors(""), None);
    }

    #[test]
    fn pods_that_could_not_join_the_running_group_recreate() {
        use Protocol::*;
        assert_eq!(choose(Some(Eager), Cooperative), Rollout::Recreate);
        assert_eq!(choose(Some(Cooperative), Eager), Rollout::Recreate);
    }

    #[test]
    fn the_same_protocol_an_empty_group_or_an_unknown_one_rolls() {
        use Protocol::*;
        assert_eq!(choose(Some(Cooperative), Cooperative), Rollout::Rolling);
        assert_eq!(choose(Some(Eager), Eager), Rollout::Rolling);
        assert_eq!(choose(None, Cooperative), Rollout::Rolling);
    }

    #[test]
    fn recreate_carries_no_rolling_parameters() {
        assert!(strategy(Rollout::Recreate).rolling_update.is_none());
        assert!(strategy(Rollout::Rolling).rolling_update.is_some());
    }
}
