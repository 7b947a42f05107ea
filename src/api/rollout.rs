//! Rollout (placeholder until the Rollout types land).
