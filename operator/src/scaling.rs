//! How many consumer replicas a pipeline gets, and why. Pure logic.
//!
//! One replica per input partition is the most that can do work (Kafka gives each partition
//! to one group member), so the partition count is the target, clamped to the user's bounds.

use crate::crd::ReplicasSpec;

/// A replica count with the reason for it, as shown in `status.scalingReason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleDecision {
    pub replicas: i32,
    pub reason: String,
}

/// Decides the replicas from the input's partition count (`None` when Kafka could not tell)
/// and the Deployment's current replicas (`None` when there is no Deployment yet).
pub fn decide(
    partitions: Option<i32>,
    current: Option<i32>,
    bounds: ReplicasSpec,
    paused: bool,
) -> ScaleDecision {
    if paused {
        return ScaleDecision {
            replicas: 0,
            reason: "paused".into(),
        };
    }
    match partitions {
        None => {
            // Never scale on missing information: a Kafka outage must not take the pipeline down.
            let replicas = current.unwrap_or(bounds.min.max(1).min(bounds.max));
            ScaleDecision {
                replicas,
                reason: format!("partition count unknown; keeping {replicas}"),
            }
        }
        Some(p) if p > bounds.max => ScaleDecision {
            replicas: bounds.max,
            reason: format!("{p} partitions, capped at replicas.max {}", bounds.max),
        },
        Some(p) if p < bounds.min => ScaleDecision {
            replicas: bounds.min,
            reason: format!("{p} partitions, raised to replicas.min {}", bounds.min),
        },
        Some(p) => ScaleDecision {
            replicas: p,
            reason: format!("{p} partitions, one replica each"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: ReplicasSpec = ReplicasSpec { min: 2, max: 4 };

    #[test]
    fn one_replica_per_partition_within_bounds() {
        assert_eq!(decide(Some(3), None, B, false).replicas, 3);
        let capped = decide(Some(6), Some(3), B, false);
        assert_eq!(capped.replicas, 4);
        assert_eq!(capped.reason, "6 partitions, capped at replicas.max 4");
        let raised = decide(Some(1), None, B, false);
        assert_eq!(raised.replicas, 2);
        assert!(raised.reason.contains("raised to replicas.min 2"));
    }

    #[test]
    fn paused_scales_to_zero() {
        assert_eq!(
            decide(Some(6), Some(4), B, true),
            ScaleDecision {
                replicas: 0,
                reason: "paused".into()
            }
        );
    }

    #[test]
    fn unknown_partitions_keep_the_current_scale() {
        assert_eq!(decide(None, Some(3), B, false).replicas, 3);
        assert_eq!(
            decide(None, None, B, false).replicas,
            2,
            "first deployment starts at min"
        );
        let zero_min = ReplicasSpec { min: 0, max: 4 };
        assert_eq!(decide(None, None, zero_min, false).replicas, 1);
    }
}
