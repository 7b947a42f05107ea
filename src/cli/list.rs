//! `list rollouts [-A] [-w]`: one line per rollout — name, strategy, status, step, weights,
//! readiness, age. With `-w`, like `kubectl get -w`: the table once, then a line whenever a
//! rollout's line changes.

use std::collections::HashMap;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;

use super::info::{current_hash, display_phase};
use super::render::{Style, age, status_word, table};
use super::{CliError, Cluster, Op, Output, print};
use crate::api::Rollout;
use crate::api::lenient::Lenient;
use crate::plan::canary::weight_at;

/// One line of the list.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRow {
    pub namespace: String,
    pub name: String,
    pub strategy: String,
    pub status: String,
    /// `k/n`, or `-` without steps.
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_weight: Option<i32>,
    /// `available/desired`.
    pub ready: String,
    #[serde(skip)]
    pub created: Option<Timestamp>,
}

/// The line of one rollout, from its object alone.
pub fn list_row(ro: &Rollout) -> ListRow {
    let st = ro.status.clone().unwrap_or_default();
    let (status, _) = display_phase(ro);
    let n = ro.steps().len() as i32;
    let idx = st.current_step_index().clamp(0, n);
    let canary = ro.spec.canary();
    let updating = st.stable_rs.as_deref() != Some(current_hash(ro).as_str());
    let routed = canary.and_then(|c| c.traffic_routing.as_ref()).is_some();
    let (set_weight, actual_weight) = match canary {
        None => (None, None),
        Some(_) if !updating => (Some(ro.spec.total_weight()), Some(ro.spec.total_weight())),
        Some(_) => {
            let set = if st.is_aborted() {
                0
            } else {
                weight_at(ro.steps(), idx, ro.spec.total_weight())
            };
            let actual = if routed {
                st.canary
                    .as_ref()
                    .and_then(|c| c.weights.as_ref())
                    .map(|w| w.canary.weight)
                    .unwrap_or(0)
            } else if st.replicas > 0 {
                ((f64::from(st.updated_replicas) * 100.0 / f64::from(st.replicas)).round()) as i32
            } else {
                0
            };
            (Some(set), Some(actual))
        }
    };
    ListRow {
        namespace: ro.namespace().unwrap_or_default(),
        name: ro.name_any(),
        strategy: if ro.spec.blue_green().is_some() {
            "BlueGreen".into()
        } else {
            "Canary".into()
        },
        status,
        step: if canary.is_some() && n > 0 {
            format!("{idx}/{n}")
        } else {
            "-".into()
        },
        set_weight,
        actual_weight,
        ready: format!("{}/{}", st.available_replicas, ro.spec.replicas()),
        created: ro.metadata.creation_timestamp.as_ref().map(|t| t.0),
    }
}

const HEADER: [&str; 8] = [
    "NAME",
    "STRATEGY",
    "STATUS",
    "STEP",
    "SET-WEIGHT",
    "WEIGHT",
    "READY",
    "AGE",
];

fn cells(row: &ListRow, all: bool, style: &Style) -> Vec<String> {
    let w = |v: Option<i32>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    let mut c = vec![];
    if all {
        c.push(row.namespace.clone());
    }
    c.extend([
        row.name.clone(),
        row.strategy.clone(),
        status_word(style, &row.status),
        row.step.clone(),
        w(row.set_weight),
        w(row.actual_weight),
        row.ready.clone(),
        match (style.now, row.created) {
            (Some(now), Some(t)) => age(now, t),
            _ => String::new(),
        },
    ]);
    c
}

fn header(all: bool) -> Vec<String> {
    let mut h: Vec<String> = vec![];
    if all {
        h.push("NAMESPACE".into());
    }
    h.extend(HEADER.iter().map(|s| s.to_string()));
    h
}

/// The table of rows.
pub fn list_table(rows: &[ListRow], all: bool, style: &Style) -> String {
    let mut t = vec![header(all)];
    t.extend(rows.iter().map(|r| cells(r, all, style)));
    table(&t)
}

/// Rollouts decoded one by one: one our types reject (admitted by an older CRD) is a warning,
/// not a failed list.
fn api(cluster: &Cluster, all: bool) -> Api<Lenient<Rollout>> {
    if all {
        Api::all(cluster.client.clone())
    } else {
        Api::namespaced(cluster.client.clone(), &cluster.namespace)
    }
}

/// The Rollout, or `None` after a warning on stderr naming the field that does not decode.
fn decoded(ro: Lenient<Rollout>) -> Option<Rollout> {
    match ro {
        Lenient::Decoded(ro) => Some(ro),
        Lenient::Undecodable(u) => {
            eprintln!(
                "warning: rollout {}/{} cannot be read: {}; fix that field",
                u.metadata.namespace.as_deref().unwrap_or_default(),
                u.metadata.name.as_deref().unwrap_or_default(),
                u.error
            );
            None
        }
    }
}

pub async fn run(
    cluster: &Cluster,
    all: bool,
    watch: bool,
    output: Output,
    no_color: bool,
) -> Result<(), CliError> {
    let op = Op::new(
        "list",
        "rollouts.aviary.dev",
        if all { "" } else { &cluster.namespace },
    );
    let list: Vec<Rollout> = match api(cluster, all).list(&ListParams::default()).await {
        Ok(l) => l.items.into_iter().filter_map(decoded).collect(),
        Err(e) => return Err(cluster.error(e, &op).await),
    };
    let mut rows: Vec<ListRow> = list.iter().map(list_row).collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let style = Style {
        color: Style::color_for_stdout(no_color),
        now: Some(Timestamp::now()),
    };
    if let Some(text) = output.encode(&rows)? {
        print(&text)?;
    } else if rows.is_empty() && !watch {
        let where_ = if all {
            "in any namespace".to_string()
        } else {
            format!("in namespace '{}'", cluster.namespace)
        };
        eprintln!("No rollouts found {where_}.");
    } else {
        print(&list_table(&rows, all, &style))?;
    }
    if !watch {
        return Ok(());
    }
    // Watch: a line whenever a rollout's line (without its age) changes.
    let mut last: HashMap<(String, String), ListRow> = rows
        .into_iter()
        .map(|r| ((r.namespace.clone(), r.name.clone()), r))
        .collect();
    let mut widths_from: Vec<Vec<String>> = vec![header(all)];
    widths_from.extend(last.values().map(|r| cells(r, all, &style)));
    let mut stream = watcher(api(cluster, all), watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let (ro, deleted) = match ev {
            Ok(watcher::Event::Apply(ro)) | Ok(watcher::Event::InitApply(ro)) => {
                match decoded(ro) {
                    Some(ro) => (ro, false),
                    None => continue,
                }
            }
            Ok(watcher::Event::Delete(ro)) => match ro {
                Lenient::Decoded(ro) => (ro, true),
                Lenient::Undecodable(_) => continue,
            },
            Ok(_) => continue,
            Err(e) => {
                let e = match e {
                    watcher::Error::InitialListFailed(k) | watcher::Error::WatchFailed(k) => {
                        cluster.error(k, &op).await
                    }
                    other => CliError::Api(other.to_string()),
                };
                if matches!(
                    e,
                    CliError::Forbidden { .. } | CliError::NotInstalled { .. }
                ) {
                    return Err(e);
                }
                continue;
            }
        };
        let mut row = list_row(&ro);
        if deleted {
            row.status = "Deleted".into();
        }
        let key = (row.namespace.clone(), row.name.clone());
        if last.get(&key) == Some(&row) {
            continue;
        }
        let now_style = Style {
            color: style.color,
            now: Some(Timestamp::now()),
        };
        if let Some(text) = output.encode(&row)? {
            print(&text)?;
        } else {
            // Align with the table printed first: pad against the widest cells seen so far.
            let mut t = widths_from.clone();
            t.push(cells(&row, all, &now_style));
            let rendered = table(&t);
            if let Some(line) = rendered.lines().last() {
                print(&format!("{line}\n"))?;
            }
            widths_from.push(cells(&row, all, &now_style));
        }
        if deleted {
            last.remove(&key);
        } else {
            last.insert(key, row);
        }
    }
    Ok(())
}
