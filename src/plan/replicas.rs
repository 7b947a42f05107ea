//! Replica arithmetic: how many pods the canary and the stable ReplicaSet should have for a
//! traffic weight.

/// Canary pods for `weight` % of traffic when a router splits traffic: enough to carry the
/// weight, rounded up (`ceil(R × w / 100)`); the stable ReplicaSet stays at full size.
pub fn routed_canary_replicas(replicas: i32, weight: i32) -> i32 {
    let (r, w) = (i64::from(replicas.max(0)), i64::from(weight.clamp(0, 100)));
    ((r * w + 99) / 100) as i32
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

#[cfg(test)]
mod tests {
    use super::*;

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
