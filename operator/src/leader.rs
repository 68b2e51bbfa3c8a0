//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can run for
//! availability while only one reconciles.
//!
//! The holder renews the Lease every `renew_every`; another replica takes it over once it has
//! not been renewed for `lease_duration`. Writes use the Lease's `resourceVersion`, so when two
//! replicas race, the API server lets exactly one win. A leader that fails to renew in time
//! stops reconciling (it may no longer be the only one). When the leader's work fails, it
//! stops leading with that error: a leader that does no work must not keep the Lease from the
//! standbys. On shutdown or failure the leader releases the Lease so a standby takes over at
//! once.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::error::{Error, Result};

/// Where the Lease lives and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's identity, e.g. its pod name.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// What to do with the Lease as it is now. Pure, so the rules are tested without a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Its holder let it expire (or released it): take it over.
    TakeOver,
    /// Someone else holds it and renews it: wait.
    Follow { holder: String },
}

pub fn next_step(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Step::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let expired = match &spec.renew_time {
        Some(MicroTime(renewed)) => renewed
            .checked_add(duration)
            .map_or(true, |until| until < now),
        None => true,
    };
    if holder.is_empty() || expired {
        Step::TakeOver
    } else {
        Step::Follow { holder }
    }
}

fn held_by(settings: &LeaseSettings, now: Timestamp, previous: Option<&LeaseSpec>) -> LeaseSpec {
    let taking_over =
        previous.is_some_and(|p| p.holder_identity.as_deref() != Some(settings.identity.as_str()));
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(
            settings
                .lease_duration
                .as_secs()
                .try_into()
                .unwrap_or(i32::MAX),
        ),
        acquire_time: match previous {
            Some(p) if !taking_over => p.acquire_time.clone(),
            _ => Some(MicroTime(now)),
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if taking_over {
            transitions + 1
        } else {
            transitions
        }),
        ..LeaseSpec::default()
    }
}

/// Tries once to become or stay the holder. Ok(true) when we hold the Lease afterwards.
async fn try_hold(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool> {
    let now = Timestamp::now();
    let current = api.get_opt(&settings.name).await?;
    let step = next_step(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &settings.identity,
        now,
    );
    let outcome = match (step, current) {
        (Step::Follow { .. }, _) => return Ok(false),
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    namespace: Some(settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(held_by(settings, now, None)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        (_, Some(mut lease)) => {
            lease.spec = Some(held_by(settings, now, lease.spec.as_ref()));
            // The resourceVersion we read makes this a compare-and-swap.
            api.replace(&settings.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        (_, None) => return Ok(false),
    };
    match outcome {
        Ok(()) => Ok(true),
        // Another replica wrote first (conflict) or created it first (already exists).
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Gives the Lease up, if we hold it, so a standby can take over without waiting.
async fn release(api: &Api<Lease>, settings: &LeaseSettings) {
    let Ok(Some(mut lease)) = api.get_opt(&settings.name).await else {
        return;
    };
    let ours = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        == Some(settings.identity.as_str());
    if !ours {
        return;
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = None;
    }
    if let Err(e) = api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(error = %e, "releasing the leader Lease failed; a standby takes over when it expires");
    }
}

/// Waits to become leader, then runs `work` while renewing the Lease. Returns when `shutdown`
/// completes or `work` ends (after releasing the Lease): with `work`'s error if it failed, or
/// with an error when leadership is lost. `on_change(true/false)` is told when leadership
/// starts and ends.
pub async fn lead<W, F>(
    client: Client,
    settings: LeaseSettings,
    shutdown: impl Future<Output = ()>,
    on_change: impl Fn(bool),
    work: W,
) -> Result<()>
where
    W: FnOnce() -> F,
    F: Future<Output = Result<()>>,
{
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    tokio::pin!(shutdown);
    // Follow until we hold the Lease.
    loop {
        match try_hold(&api, &settings).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(settings.renew_every) => {}
        }
    }
    tracing::info!(identity = %settings.identity, lease = %settings.name, "became leader");
    on_change(true);
    let work = work();
    tokio::pin!(work);
    let mut last_renewal = tokio::time::Instant::now();
    let result = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            done = &mut work => break done,
            () = tokio::time::sleep(settings.renew_every) => {
                match try_hold(&api, &settings).await {
                    Ok(true) => last_renewal = tokio::time::Instant::now(),
                    Ok(false) => break Err(Error::Lease(format!("another replica took over Lease {}", settings.name))),
                    Err(e) if last_renewal.elapsed() < settings.lease_duration => {
                        tracing::warn!(error = %e, "renewing the leader Lease failed; retrying");
                    }
                    Err(e) => break Err(Error::Lease(format!("could not renew Lease {} in time: {e}", settings.name))),
                }
            }
        }
    };
    on_change(false);
    release(&api, &settings).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).expect("ts"))),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("ts")
    }

    #[test]
    fn steps() {
        assert_eq!(next_step(None, "a", at(100)), Step::Create);
        assert_eq!(
            next_step(Some(&spec("a", 90, 15)), "a", at(100)),
            Step::Renew
        );
        assert_eq!(
            next_step(Some(&spec("b", 90, 15)), "a", at(100)),
            Step::Follow { holder: "b".into() }
        );
        assert_eq!(
            next_step(Some(&spec("b", 80, 15)), "a", at(100)),
            Step::TakeOver,
            "expired"
        );
        assert_eq!(
            next_step(Some(&spec("", 99, 15)), "a", at(100)),
            Step::TakeOver,
            "released"
        );
    }

    #[test]
    fn takeover_counts_transitions_and_renewal_keeps_acquire_time() {
        let settings = LeaseSettings {
            name: "l".into(),
            namespace: "n".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let mut theirs = spec("b", 10, 15);
        theirs.lease_transitions = Some(2);
        let taken = held_by(&settings, at(100), Some(&theirs));
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(100))));
        let renewed = held_by(&settings, at(105), Some(&taken));
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(105))));
    }
}
