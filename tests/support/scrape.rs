//! Reading a controller's `/metrics`, and registering it with the local Prometheus.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// One sample of the text exposition format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus / OpenMetrics text format (label values without escaped quotes, as
/// the controller's are).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let body = rest.strip_suffix('}')?;
                    let labels = body
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .filter_map(|kv| {
                            let (k, v) = kv.split_once('=')?;
                            Some((k.to_string(), v.trim_matches('"').to_string()))
                        })
                        .collect();
                    (n.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            Some(Sample {
                name,
                labels,
                value,
            })
        })
        .collect()
}

/// GET `/metrics`.
pub async fn scrape(addr: SocketAddr) -> Option<Vec<Sample>> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(parse(&text))
}

/// The status code of GET `path`.
pub async fn probe(addr: SocketAddr, path: &str) -> Option<u16> {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// The sum of the samples named `name` whose labels include all of `labels`.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(samples, name, labels)
        .iter()
        .map(|s| s.value)
        .sum()
}

/// The samples named `name` whose labels include all of `labels`.
pub fn matching<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// Registers `addr` as a scrape target of the local Prometheus (a file_sd target file, removed
/// when dropped).
pub struct PromTarget {
    file: PathBuf,
}

impl PromTarget {
    pub fn register(name: &str, addr: SocketAddr) -> Self {
        let dir = std::env::var("AVIARY_PROM_TARGETS_DIR")
            .expect("AVIARY_PROM_TARGETS_DIR (from hack/cluster.sh env)");
        let file = PathBuf::from(dir).join(format!("{name}.json"));
        let body =
            serde_json::json!([{"targets": [addr.to_string()], "labels": {"exporter": name}}]);
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, body.to_string()).expect("write target file");
        std::fs::rename(&tmp, &file).expect("publish target file");
        PromTarget { file }
    }
}

impl Drop for PromTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}
