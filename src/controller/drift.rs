//! Someone else's change to an object a Rollout steers (a GitOps sync resetting a weight, a hand
//! edit of a selector), and who made it.
//!
//! The watches of Services and routing objects wake the Rollouts that name a changed object
//! ([`super::wakers`]). For a change that is not our own write they also note here the field
//! manager that made it: the newest entry of the object's `managedFields`. When a reconcile
//! then writes the object, and what it overwrote (a canary weight, a selector's revision) is
//! not what our last write of it had set, someone else changed it: the note becomes a Warning
//! Event `DriftCorrected` on the Rollout naming that manager, and a count in
//! `aviary_drift_corrections_total{kind}`. A write that overwrote our own value (the next step
//! after someone relabelled the object) is no correction. What is kept per object goes after
//! [`LIFETIME`] without a write or a change: a correction after that is still made, only not
//! attributed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::ObjectMeta;

use crate::api::wire::{self, reasons};
use crate::plan::Event;

/// How long what is known of an object is kept without a write or a change to it.
pub const LIFETIME: Duration = Duration::from_secs(3600);

/// Per object (`Kind ns/name`): the value our last write set and who changed it since.
#[derive(Default)]
pub struct DriftNotes {
    objects: Mutex<HashMap<String, Known>>,
}

struct Known {
    /// The value of the field we steer, as our last write set it.
    ours: Option<String>,
    /// The field manager of a change not ours since that write.
    changed_by: Option<String>,
    touched: Instant,
}

impl Known {
    fn new() -> Self {
        Known {
            ours: None,
            changed_by: None,
            touched: Instant::now(),
        }
    }
}

fn key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind} {namespace}/{name}")
}

impl DriftNotes {
    /// `manager` changed `kind` `namespace/name` (a change not ours).
    pub fn note(&self, kind: &str, namespace: &str, name: &str, manager: &str) {
        if let Ok(mut objects) = self.objects.lock() {
            let known = objects
                .entry(key(kind, namespace, name))
                .or_insert_with(Known::new);
            known.changed_by = Some(manager.to_string());
            known.touched = Instant::now();
        }
    }

    /// Our write set the object's steered field from `overwritten` to `written`: the manager
    /// of the change it put back, when `overwritten` is not what our last write had set and a
    /// change by someone else was noted since.
    pub fn wrote(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        overwritten: Option<&str>,
        written: &str,
    ) -> Option<String> {
        let mut objects = self.objects.lock().ok()?;
        let known = objects
            .entry(key(kind, namespace, name))
            .or_insert_with(Known::new);
        let changed_by = known.changed_by.take();
        let corrected = known.ours.is_some() && known.ours.as_deref() != overwritten;
        known.ours = Some(written.to_string());
        known.touched = Instant::now();
        changed_by.filter(|_| corrected)
    }

    /// Forgets objects neither written nor changed for [`LIFETIME`].
    pub fn forget_stale(&self) {
        if let Ok(mut objects) = self.objects.lock() {
            objects.retain(|_, known| known.touched.elapsed() < LIFETIME);
        }
    }

    /// How many objects are known (for tests).
    pub fn len(&self) -> usize {
        self.objects.lock().map(|n| n.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The field manager of the object's newest change: the `managedFields` entry with the latest
/// time (an entry without one counts as oldest). Times have one-second resolution: on a tie
/// another manager wins over ours, so a change is taken for ours only when it surely is.
pub fn last_writer(meta: &ObjectMeta) -> Option<&str> {
    meta.managed_fields
        .as_ref()?
        .iter()
        .filter_map(|m| Some((m.time.as_ref().map(|t| t.0), m.manager.as_deref()?)))
        .max_by_key(|(time, manager)| (*time, !is_ours(manager)))
        .map(|(_, manager)| manager)
}

/// Whether a change by `manager` is the controller's own.
pub fn is_ours(manager: &str) -> bool {
    manager == wire::FIELD_MANAGER
}

/// The Event of a write that put back what `manager` changed on `object` (`Kind 'ns/name'`).
pub fn corrected(object: &str, manager: &str, what: &str) -> Event {
    Event::warning(
        reasons::DRIFT_CORRECTED,
        format!("{object} was changed by field manager '{manager}'; {what}"),
    )
}

/// The metric label of a kind.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "VirtualService" => "VirtualService",
        "HTTPRoute" => "HTTPRoute",
        "Ingress" => "Ingress",
        "Service" => "Service",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    fn entry(manager: &str, secs: i64) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).expect("time"),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn the_newest_entry_names_the_writer() {
        let meta = ObjectMeta {
            managed_fields: Some(vec![
                entry("aviary", 20),
                entry("flux", 30),
                entry("kubectl", 10),
            ]),
            ..Default::default()
        };
        assert_eq!(last_writer(&meta), Some("flux"));
        assert_eq!(last_writer(&ObjectMeta::default()), None);
        let tie = ObjectMeta {
            managed_fields: Some(vec![entry("flux", 30), entry("aviary", 30)]),
            ..Default::default()
        };
        assert_eq!(
            last_writer(&tie),
            Some("flux"),
            "a tie is not taken for ours"
        );
        assert!(is_ours("aviary") && !is_ours("flux"));
    }

    #[test]
    fn a_correction_is_attributed_only_when_it_overwrote_someone_else_s_value() {
        let notes = DriftNotes::default();
        // Our first write of it: nothing known to correct.
        assert_eq!(
            notes.wrote("VirtualService", "shop", "web", Some("0"), "20"),
            None
        );
        // Reset to 0 by flux; we put 20 back: attributed, once.
        notes.note("VirtualService", "shop", "web", "flux");
        assert_eq!(
            notes
                .wrote("VirtualService", "shop", "web", Some("0"), "20")
                .as_deref(),
            Some("flux")
        );
        assert_eq!(
            notes.wrote("VirtualService", "shop", "web", Some("0"), "20"),
            None
        );
        // Someone relabels it; the next step moves our own 20 to 40: no correction.
        notes.note("VirtualService", "shop", "web", "kubectl");
        assert_eq!(
            notes.wrote("VirtualService", "shop", "web", Some("20"), "40"),
            None
        );
        notes.forget_stale();
        assert_eq!(notes.len(), 1, "a recent object is kept");
    }
}
