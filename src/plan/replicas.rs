//! Replica arithmetic: how many pods the canary and the stable ReplicaSet should have for a
//! traffic weight, and how fast they may get there.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Canary pods for `weight` % of traffic when a router splits traffic: enough to carry the
/// weight, rounded up (`ceil(R × w / 100)`); the stable ReplicaSet stays at full size.
pub fn routed_canary_replicas(replicas: i32, weight: i32) -> i32 {
    routed_replicas_of(replicas, weight, 100)
}

/// [`routed_canary_replicas`] for a weight out of `total` (`maxTrafficWeight`):
/// `ceil(R × w / total)`, as Argo Rollouts' `trafficWeightToReplicas`.
pub fn routed_replicas_of(replicas: i32, weight: i32, total: i32) -> i32 {
    let total = i64::from(total.max(1));
    let (r, w) = (
        i64::from(replicas.max(0)),
        i64::from(weight).clamp(0, total),
    );
    i32::try_from((r * w + total - 1) / total).unwrap_or(i32::MAX)
}

/// Canary and stable pod counts for `weight` % without a traffic router: traffic follows pods, so
/// the split of pods must approximate the weight. As Argo Rollouts does: candidates are the floor
/// and ceiling of `R × w / 100` out of `R` pods, and out of `R + 1` when a surge pod is allowed;
/// the ratio nearest the weight wins, ties going to the larger canary; for `0 < w < 100` neither
/// side may be empty (unless `R = 1` without surge, where the canary is 0 until 100 %).
pub fn basic_split(replicas: i32, weight: i32, surge_allowed: bool) -> (i32, i32) {
    let r = replicas.max(0);
    let w = weight.clamp(0, 100);
    if w == 0 || r == 0 {
        return (0, r);
    }
    if w == 100 {
        return (r, 0);
    }
    let target = f64::from(w) / 100.0;
    let totals: &[i32] = if surge_allowed { &[r, r + 1] } else { &[r] };
    let mut best: Option<(f64, i32, i32)> = None;
    for &total in totals {
        let exact = i64::from(total) * i64::from(w);
        let floor = (exact / 100) as i32;
        let ceil = ((exact + 99) / 100) as i32;
        for canary in [floor, ceil] {
            let stable = total - canary;
            if canary == 0 || stable == 0 {
                continue;
            }
            let distance = (f64::from(canary) / f64::from(total) - target).abs();
            let better = match best {
                None => true,
                Some((d, c, _)) => {
                    distance < d - 1e-12 || ((distance - d).abs() <= 1e-12 && canary > c)
                }
            };
            if better {
                best = Some((distance, canary, stable));
            }
        }
    }
    match best {
        Some((_, c, s)) => (c, s),
        // R = 1 without surge: no split keeps both sides non-empty.
        None => (0, r),
    }
}

/// `maxSurge` and `maxUnavailable` in pods for `replicas`, as Kubernetes resolves them: a
/// percentage of surge rounds up, of unavailable rounds down; if both come to 0, one pod may be
/// unavailable (a rollout must be able to move).
pub fn surge_and_unavailable(
    replicas: i32,
    surge: &IntOrString,
    unavailable: &IntOrString,
) -> (i32, i32) {
    let r = i64::from(replicas.max(0));
    let resolve = |v: &IntOrString, round_up: bool| -> i32 {
        match v {
            IntOrString::Int(i) => (*i).max(0),
            IntOrString::String(s) => {
                let p = s
                    .trim()
                    .trim_end_matches('%')
                    .parse::<i64>()
                    .unwrap_or(25)
                    .clamp(0, 100);
                let x = r * p;
                (if round_up { (x + 99) / 100 } else { x / 100 }) as i32
            }
        }
    };
    match (resolve(surge, true), resolve(unavailable, false)) {
        (0, 0) => (0, 1),
        other => other,
    }
}

/// One ReplicaSet in a paced move: its `spec.replicas`, its available pods, and the count it
/// should reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacedSet {
    pub replicas: i32,
    pub available: i32,
    pub target: i32,
}

/// Moves ReplicaSets toward their targets as a rolling update does, for one reconcile: scale-ups
/// share what `maxSurge` leaves above `replicas` (in the order given), scale-downs first drop
/// pods that are not available, then only as many available pods as keep `replicas −
/// maxUnavailable` available in all (in the reverse order: put what should go first last).
/// Called again as pods become available, it reaches the targets.
pub fn pace(replicas: i32, surge: i32, unavailable: i32, sets: &[PacedSet]) -> Vec<i32> {
    let total: i32 = sets.iter().map(|s| s.replicas.max(0)).sum();
    let available: i32 = sets
        .iter()
        .map(|s| s.available.clamp(0, s.replicas.max(0)))
        .sum();
    let mut up_budget = (replicas + surge - total).max(0);
    let mut down_budget = (available - (replicas - unavailable)).max(0);
    let mut next: Vec<i32> = sets.iter().map(|s| s.replicas.max(0)).collect();
    for (i, s) in sets.iter().enumerate() {
        let (now, target) = (s.replicas.max(0), s.target.max(0));
        if target > now {
            let up = (target - now).min(up_budget);
            up_budget -= up;
            next[i] = now + up;
        }
    }
    for (i, s) in sets.iter().enumerate().rev() {
        let (now, target) = (s.replicas.max(0), s.target.max(0));
        if target < now {
            // Pods that are not available go first, as the ReplicaSet controller picks them.
            let without_unavailable = target.max(s.available.clamp(0, now));
            let down = (without_unavailable - target).min(down_budget);
            down_budget -= down;
            next[i] = without_unavailable - down;
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(replicas: i32, available: i32, target: i32) -> PacedSet {
        PacedSet {
            replicas,
            available,
            target,
        }
    }

    #[test]
    fn surge_and_unavailable_round_as_kubernetes_does() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(surge_and_unavailable(10, &pct("25%"), &pct("25%")), (3, 2));
        assert_eq!(surge_and_unavailable(1, &pct("25%"), &pct("25%")), (1, 0));
        assert_eq!(
            surge_and_unavailable(5, &IntOrString::Int(0), &pct("1%")),
            (0, 1)
        );
        assert_eq!(
            surge_and_unavailable(5, &IntOrString::Int(2), &IntOrString::Int(1)),
            (2, 1)
        );
    }

    #[test]
    fn pace_keeps_surge_and_availability() {
        // An abort at 80 %: canary 8 of 8 available, stable 2 desired back to 10. maxSurge 3,
        // maxUnavailable 2: the stable grows by 3 now; the canary gives up only the 2 pods
        // maxUnavailable allows, until stable pods are available.
        let next = pace(10, 3, 2, &[set(2, 2, 10), set(8, 8, 0)]);
        assert_eq!(next, vec![5, 6]);
        // The new stable pods became available: the canary gives up what keeps 8 available.
        let next = pace(10, 3, 2, &[set(5, 5, 10), set(6, 6, 0)]);
        assert_eq!(next, vec![7, 3]);
        // Pods that are not available go first, and freely.
        let next = pace(10, 3, 2, &[set(10, 2, 10), set(8, 6, 0)]);
        assert_eq!(next, vec![10, 6]);
        // No surge: scale down first, within maxUnavailable, then up.
        let next = pace(4, 0, 1, &[set(0, 0, 2), set(4, 4, 2)]);
        assert_eq!(next, vec![0, 3]);
        let next = pace(4, 0, 1, &[set(0, 0, 2), set(3, 3, 2)]);
        assert_eq!(next, vec![1, 3]);
    }

    #[test]
    fn routed_counts_round_up() {
        let cases = [
            (5, 10, 1),
            (5, 50, 3),
            (5, 100, 5),
            (5, 0, 0),
            (10, 10, 1),
            (10, 11, 2),
            (1, 1, 1),
            (3, 33, 1),
        ];
        for (r, w, want) in cases {
            assert_eq!(routed_canary_replicas(r, w), want, "R={r} w={w}");
        }
    }

    #[test]
    fn basic_split_matches_argo_examples() {
        // (R, w, surge) -> (canary, stable)
        let cases = [
            (10, 10, true, (1, 9)),
            (3, 50, true, (2, 2)),
            (1, 5, true, (1, 1)),
            (1, 5, false, (0, 1)),
            (4, 25, false, (1, 3)),
            (5, 20, true, (1, 4)),
            (5, 100, true, (5, 0)),
            (5, 0, true, (0, 5)),
            (2, 50, false, (1, 1)),
        ];
        for (r, w, surge, want) in cases {
            assert_eq!(basic_split(r, w, surge), want, "R={r} w={w} surge={surge}");
        }
    }
}
