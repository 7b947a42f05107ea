//! A retired run stays retired until the cache shows it.

use super::*;

fn run(uid: &str, retired: bool) -> AnalysisRun {
    let mut labels = json!({});
    if retired {
        labels[RETIRED_LABEL] = json!("true");
    }
    serde_json::from_value(json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "web-abc-1-0", "namespace": "app", "uid": uid, "labels": labels},
        "spec": {"metrics": []},
    }))
    .expect("run")
}

#[test]
fn a_run_we_retired_stays_retired_until_the_cache_shows_it() {
    let retired = RetiredRuns::default();
    assert!(!retired.retired(&run("u1", false)));
    retired.record("u1".into());
    // The cache lags our patch: the run still counts as retired.
    assert!(retired.retired(&run("u1", false)));
    assert!(retired.retired(&run("u1", false)));
    assert!(!retired.retired(&run("u2", false)), "another run");
    // The cache caught up: the label says it from now on, and the entry is gone.
    assert!(retired.retired(&run("u1", true)));
    assert!(!retired.retired(&run("u1", false)));
    // A run deleted before the cache showed it is forgotten.
    retired.record("u3".into());
    retired.retain(&std::collections::HashSet::new());
    assert!(!retired.retired(&run("u3", false)));
}
