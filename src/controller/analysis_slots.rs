//! Fair shares of the analysis slots between namespaces (tenants).
//!
//! Every AnalysisRun reconcile holds one of the run controller's slots while it measures, for
//! as long as its slowest provider answers. Without shares, one tenant with many slow metrics
//! held all of them and every other tenant's verdicts, and with them their aborts, waited.
//! Here a namespace may measure in at most [`NamespaceSlots::per_namespace`] reconciles at
//! once; a run over its namespace's share is looked at again shortly, without a request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Measuring reconciles in flight, by namespace.
#[derive(Debug)]
pub struct NamespaceSlots {
    per_namespace: usize,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

/// One namespace's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    namespace: String,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl NamespaceSlots {
    /// Shares of `concurrency` slots: a quarter each (at least one), so at least four tenants
    /// can measure at once whatever the others do.
    pub fn new(concurrency: u16) -> Self {
        Self {
            per_namespace: usize::from(concurrency / 4).max(1),
            in_flight: Arc::default(),
        }
    }

    /// How many reconciles of one namespace may measure at once.
    pub fn per_namespace(&self) -> usize {
        self.per_namespace
    }

    /// A slot for `namespace`, or `None` when its share is in use.
    pub fn try_take(&self, namespace: &str) -> Option<Slot> {
        let mut m = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(namespace.to_string()).or_insert(0);
        if *n >= self.per_namespace {
            return None;
        }
        *n += 1;
        Some(Slot {
            namespace: namespace.to_string(),
            in_flight: self.in_flight.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.namespace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_namespace_cannot_take_every_slot() {
        let slots = NamespaceSlots::new(16);
        assert_eq!(slots.per_namespace(), 4);
        let busy: Vec<Slot> = (0..4)
            .filter_map(|_| slots.try_take("slow-tenant"))
            .collect();
        assert_eq!(busy.len(), 4);
        assert!(slots.try_take("slow-tenant").is_none(), "over its share");
        let other = slots.try_take("other-tenant");
        assert!(other.is_some(), "another tenant still measures");
        drop(busy);
        assert!(
            slots.try_take("slow-tenant").is_some(),
            "given back when done"
        );
        assert_eq!(NamespaceSlots::new(2).per_namespace(), 1);
    }
}
