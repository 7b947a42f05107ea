//! Someone else's change to an object a Rollout steers (a GitOps sync resetting a weight, a hand
//! edit of a selector), and who made it.
//!
//! The watches of Services and routing objects wake the Rollouts that name a changed object
//! ([`super::wakers`]). For a change that is not our own write they also note here the field
//! manager that made it: the newest entry of the object's `managedFields`. When a reconcile
//! then writes the object, and what it overwrote (a canary weight, a selector's revision) is
//! not what that Rollout's last write of it had set, someone else changed it: the note becomes
//! a Warning Event `DriftCorrected` on the Rollout naming that manager, and a count in
//! `aviary_drift_corrections_total{kind}`. A write that overwrote our own value (the next step
//! after someone relabelled the object) is no correction.
//!
//! What our writes set is kept per object *and Rollout*: two Rollouts may steer routes of one
//! VirtualService, and one's write is not the other's drift. A write fight (a sync that resets
//! the weight every few seconds) is corrected every time and counted every time, but told in an
//! Event once per [`EVENT_INTERVAL`] per manager. What is kept goes with its Rollout, and after
//! [`LIFETIME`] without a write or a change: a correction after that is still made, only not
//! attributed.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::ObjectMeta;

use crate::api::wire::{self, reasons};
use crate::plan::Event;

/// How long what is known of an object is kept without a write or a change to it.
pub const LIFETIME: Duration = Duration::from_secs(3600);

/// The least time between two `DriftCorrected` Events for one object, Rollout and manager.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(60);

/// Per object (`Kind ns/name`), per Rollout steering it: the value its last write set, and who
/// changed the object since.
#[derive(Default)]
pub struct DriftNotes {
    objects: Mutex<HashMap<String, Known>>,
}

#[derive(Default)]
struct Known {
    /// By the Rollout (`ns/name`) that wrote it: an Istio VirtualService may live in another
    /// namespace than the Rollouts that steer it.
    by_rollout: HashMap<String, Ours>,
    touched: Option<Instant>,
}

#[derive(Default)]
struct Ours {
    /// The value of the field the Rollout steers, as its last write set it.
    value: Option<String>,
    /// The field manager of a change not ours since that write.
    changed_by: Option<String>,
    /// When an Event last named each manager (kept for [`EVENT_INTERVAL`]).
    told: HashMap<String, Instant>,
}

/// A write put back someone else's change.
#[derive(Debug, PartialEq)]
pub struct Correction {
    /// The field manager whose change it put back.
    pub manager: String,
    /// Whether to tell it in an Event (not within [`EVENT_INTERVAL`] of the last naming the
    /// same manager).
    pub tell: bool,
}

/// A routing object as the notes name it: `(kind, namespace, name)`.
pub fn object_key(object: &crate::traffic::RoutingObject) -> (&str, &str, &str) {
    (&object.resource.kind, &object.namespace, &object.name)
}

fn key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind} {namespace}/{name}")
}

impl DriftNotes {
    /// `manager` changed `kind` `namespace/name`. Our own changes are not noted, nor changes
    /// to objects no Rollout has written.
    pub fn note(&self, kind: &str, namespace: &str, name: &str, manager: &str) {
        if is_ours(manager) {
            return;
        }
        let Ok(mut objects) = self.objects.lock() else {
            return;
        };
        if let Some(known) = objects.get_mut(&key(kind, namespace, name)) {
            for ours in known.by_rollout.values_mut() {
                ours.changed_by = Some(manager.to_string());
            }
            known.touched = Some(Instant::now());
        }
    }

    /// Rollout `rollout` (`ns/name`) left the object's steered field at `value` by a write
    /// not judged for drift (an abort's, or one that found the value already right), or at an
    /// unknown value (`None`: a write that failed may have landed). Its next write is judged
    /// against this.
    pub fn set(
        &self,
        rollout: &str,
        (kind, namespace, name): (&str, &str, &str),
        value: Option<&str>,
    ) {
        let Ok(mut objects) = self.objects.lock() else {
            return;
        };
        let known = objects.entry(key(kind, namespace, name)).or_default();
        known.touched = Some(Instant::now());
        let ours = known.by_rollout.entry(rollout.to_string()).or_default();
        ours.value = value.map(str::to_string);
        ours.changed_by = None;
    }

    /// Rollout `rollout`'s (`ns/name`) write set the object's steered field from `overwritten`
    /// to `written`: the correction it made, when `overwritten` is not what that Rollout's last
    /// write had set and a change by someone else was noted since.
    pub fn wrote(
        &self,
        rollout: &str,
        (kind, namespace, name): (&str, &str, &str),
        overwritten: Option<&str>,
        written: &str,
    ) -> Option<Correction> {
        let mut objects = self.objects.lock().ok()?;
        let known = objects.entry(key(kind, namespace, name)).or_default();
        let now = Instant::now();
        known.touched = Some(now);
        let ours = known.by_rollout.entry(rollout.to_string()).or_default();
        let changed_by = ours.changed_by.take();
        let corrected = ours.value.is_some() && ours.value.as_deref() != overwritten;
        ours.value = Some(written.to_string());
        let manager = changed_by.filter(|_| corrected)?;
        ours.told
            .retain(|_, at| now.duration_since(*at) < EVENT_INTERVAL);
        let tell = !ours.told.contains_key(&manager);
        if tell {
            ours.told.insert(manager.clone(), now);
        }
        Some(Correction { manager, tell })
    }

    /// Forgets the Rollouts not in `live` (`ns/name` keys), and objects neither written nor
    /// changed for [`LIFETIME`].
    pub fn forget(&self, live: &HashSet<String>) {
        if let Ok(mut objects) = self.objects.lock() {
            objects.retain(|_, known| {
                known.by_rollout.retain(|rollout, _| live.contains(rollout));
                !known.by_rollout.is_empty()
                    && known.touched.is_some_and(|t| t.elapsed() < LIFETIME)
            });
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
/// time (an entry without one counts as oldest). Entries of a subresource (`status`, `scale`)
/// are left out: they change no field we steer. Times have one-second resolution: on a tie
/// another manager wins over ours, so a change is taken for ours only when it surely is.
pub fn last_writer(meta: &ObjectMeta) -> Option<&str> {
    meta.managed_fields
        .as_ref()?
        .iter()
        .filter(|m| m.subresource.as_deref().unwrap_or_default().is_empty())
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
    fn status_entries_do_not_name_the_writer() {
        let mut status = entry("kube-controller-manager", 40);
        status.subresource = Some("status".into());
        let meta = ObjectMeta {
            managed_fields: Some(vec![entry("flux", 30), status]),
            ..Default::default()
        };
        assert_eq!(last_writer(&meta), Some("flux"));
    }

    const VS: (&str, &str, &str) = ("VirtualService", "shop", "web");

    fn manager(c: Option<Correction>) -> Option<String> {
        c.map(|c| c.manager)
    }

    #[test]
    fn a_correction_is_attributed_only_when_it_overwrote_someone_else_s_value() {
        let notes = DriftNotes::default();
        // Our first write of it: nothing known to correct.
        assert_eq!(notes.wrote("shop/web", VS, Some("0"), "20"), None);
        // Reset to 0 by flux; we put 20 back: attributed, once.
        notes.note("VirtualService", "shop", "web", "flux");
        assert_eq!(
            manager(notes.wrote("shop/web", VS, Some("0"), "20")).as_deref(),
            Some("flux")
        );
        assert_eq!(notes.wrote("shop/web", VS, Some("0"), "20"), None);
        // Someone relabels it; the next step moves our own 20 to 40: no correction.
        notes.note("VirtualService", "shop", "web", "kubectl");
        assert_eq!(notes.wrote("shop/web", VS, Some("20"), "40"), None);
        // Our own change is never noted as someone else's.
        notes.note("VirtualService", "shop", "web", wire::FIELD_MANAGER);
        assert_eq!(notes.wrote("shop/web", VS, Some("0"), "40"), None);
    }

    #[test]
    fn rollouts_sharing_an_object_are_not_each_other_s_drift() {
        let notes = DriftNotes::default();
        assert_eq!(notes.wrote("shop/web", VS, Some("0"), "20"), None);
        assert_eq!(notes.wrote("shop/api", VS, Some("0"), "50"), None);
        // flux touches the object; each Rollout overwrote only its own value: no correction.
        notes.note("VirtualService", "shop", "web", "flux");
        assert_eq!(notes.wrote("shop/web", VS, Some("20"), "40"), None);
        assert_eq!(notes.wrote("shop/api", VS, Some("50"), "100"), None);
        // flux resets both routes: both corrections are attributed.
        notes.note("VirtualService", "shop", "web", "flux");
        assert!(notes.wrote("shop/web", VS, Some("0"), "40").is_some());
        assert!(notes.wrote("shop/api", VS, Some("0"), "100").is_some());
    }

    /// After a first write of 20, each of `managers` in turn resets the weight and it is put
    /// back: whether each correction is told (each is counted and names its manager).
    fn told(managers: &[&str]) -> Vec<bool> {
        let notes = DriftNotes::default();
        let _ = notes.wrote("shop/web", VS, None, "20");
        managers
            .iter()
            .map(|manager| {
                notes.note("VirtualService", "shop", "web", manager);
                let c = notes
                    .wrote("shop/web", VS, Some("0"), "20")
                    .expect("a correction");
                assert_eq!(c.manager, *manager);
                c.tell
            })
            .collect()
    }

    #[test]
    fn a_write_fight_is_counted_every_time_and_told_once_per_interval() {
        assert_eq!(
            told(&["flux", "flux", "flux", "argocd"]),
            [true, false, false, true]
        );
    }

    #[test]
    fn what_is_kept_goes_with_its_rollout() {
        let notes = DriftNotes::default();
        let _ = notes.wrote("shop/web", VS, None, "20");
        let _ = notes.wrote("shop/api", ("Service", "shop", "api"), None, "abc");
        // A change to an object no Rollout wrote keeps nothing.
        notes.note("Service", "shop", "other", "kubectl");
        assert_eq!(notes.len(), 2);
        notes.forget(&HashSet::from(["shop/web".to_string()]));
        assert_eq!(notes.len(), 1, "the deleted Rollout's object is forgotten");
        notes.forget(&HashSet::new());
        assert!(notes.is_empty());
    }

    // Istio: `virtualService: mesh/reviews` lives outside the Rollouts' namespaces.
    const MESH_VS: (&str, &str, &str) = ("VirtualService", "mesh", "reviews");

    #[test]
    fn an_object_in_another_namespace_is_kept_while_its_rollout_lives() {
        let notes = DriftNotes::default();
        let _ = notes.wrote("app/web", MESH_VS, None, "20");
        notes.forget(&HashSet::from(["app/web".to_string()]));
        notes.note("VirtualService", "mesh", "reviews", "flux");
        assert!(notes.wrote("app/web", MESH_VS, Some("0"), "20").is_some());
    }

    #[test]
    fn same_named_rollouts_of_two_namespaces_are_not_each_other_s_drift() {
        let notes = DriftNotes::default();
        let _ = notes.wrote("app/web", MESH_VS, Some("0"), "20");
        let _ = notes.wrote("shop/web", MESH_VS, Some("0"), "50");
        notes.note("VirtualService", "mesh", "reviews", "kubectl");
        assert_eq!(notes.wrote("app/web", MESH_VS, Some("20"), "40"), None);
    }

    #[test]
    fn writes_not_judged_are_recorded_and_use_up_no_event() {
        let notes = DriftNotes::default();
        let _ = notes.wrote("shop/web", VS, Some("0"), "40");
        // kubectl annotates it; an abort sets 0 (not judged); the retry's first step 0 -> 20
        // is no correction.
        notes.note("VirtualService", "shop", "web", "kubectl");
        notes.set("shop/web", VS, Some("0"));
        assert_eq!(notes.wrote("shop/web", VS, Some("0"), "20"), None);
        // kubectl then sets 30; the abort's own write was no Event, so this one is told.
        notes.note("VirtualService", "shop", "web", "kubectl");
        let c = notes
            .wrote("shop/web", VS, Some("30"), "0")
            .expect("a correction");
        assert!(c.tell);
        // A failed write leaves the value unknown: the next write is not judged.
        notes.set("shop/web", VS, None);
        notes.note("VirtualService", "shop", "web", "flux");
        assert_eq!(notes.wrote("shop/web", VS, Some("7"), "20"), None);
    }

    #[test]
    fn alternating_managers_are_each_told_once_per_interval() {
        assert_eq!(
            told(&["flux", "argocd", "flux", "argocd"]),
            [true, true, false, false]
        );
    }
}
