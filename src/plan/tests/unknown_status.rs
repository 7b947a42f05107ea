//! A status written by a newer controller, read by this one (a `helm rollback`): a pause reason
//! this version does not know is not guessed at. Found by review: read as `CanaryPauseStep`,
//! blue-green took it for a pause that `promote` had cleared and switched the active Service,
//! and a canary step went on. Such a Rollout does not decode: the controller skips it and
//! reports it (`api::lenient`, `controller::undecodable`), acting on nothing it cannot read.

use super::bluegreen::BLUE_GREEN;
use super::*;
use crate::api::lenient::{Lenient, decode};

#[test]
fn an_unknown_pause_reason_is_not_guessed_at() {
    for yaml in [BLUE_GREEN, ISTIO] {
        let mut w = World::new(yaml);
        w.deploy_first();
        w.update_image("web:2");
        w.run(10);
        assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
        let mut ro = serde_json::to_value(&w.ro).expect("rollout");
        ro["status"]["pauseConditions"][0]["reason"] = serde_json::json!("SomeNewerReason");
        match decode::<Rollout>(ro) {
            Ok(Lenient::Undecodable(u)) => assert!(
                u.error.starts_with("status.pauseConditions[0].reason"),
                "{}",
                u.error
            ),
            Ok(Lenient::Decoded(r)) => panic!("decoded as {:?}", r.status),
            Err(e) => panic!("{e}"),
        }
    }
}
