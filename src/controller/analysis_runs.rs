//! AnalysisRuns for analysis steps. Until the analysis controller lands, an analysis step waits:
//! nothing is created and the planner keeps the rollout at that step.

use tracing::debug;

use super::Context;
use super::error::Error;
use crate::api::Rollout;
use crate::plan::Action;

pub async fn apply(_ctx: &Context, ro: &Rollout, action: &Action) -> Result<(), Error> {
    debug!(rollout = ?ro.metadata.name, ?action, "analysis runs are not created yet: the step waits");
    Ok(())
}
