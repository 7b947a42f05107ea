//! `convert -f FILE`: Argo Rollouts manifests (`argoproj.io/v1alpha1`) to Aviary's.
//!
//! Rollout, AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun move to
//! `aviary.dev/v1alpha1` (field names are Argo's). Every field Aviary does not support — an Argo
//! feature it rejects by name, or a field unknown to its API — is removed from the output and
//! listed with its path and line, and the command exits 1; other Argo kinds (Experiment, …)
//! are left out and listed too. Two gaps the API server would reject are filled and noted
//! instead: a Rollout without `selector` gets its template's labels, and a routed canary without
//! `canaryService`/`stableService` gets `<name>-canary`/`<name>-stable` (which must then
//! exist). Other documents pass through unchanged. Key order and values are kept.

use std::path::Path;

use serde_yaml::Value as Yaml;

use super::CliError;
use super::lint::{
    ARGO_API_VERSION, Document, Seg, Severity, check_document, documents, format_finding,
    parse_path, read_input,
};
use crate::api::{API_VERSION, crd_for};

/// The result of converting a file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Converted {
    /// The converted manifests.
    pub yaml: String,
    /// Fields or documents Aviary does not support, as `FILE:LINE: PATH: message` lines.
    pub unsupported: Vec<String>,
    /// Gaps filled in, to review.
    pub notes: Vec<String>,
}

fn key(k: &str) -> Yaml {
    Yaml::String(k.to_string())
}

fn get_mut<'a>(v: &'a mut Yaml, path: &[Seg]) -> Option<&'a mut Yaml> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.as_mapping_mut()?.get_mut(key(k))?,
            Seg::Index(i) => cur.as_sequence_mut()?.get_mut(*i)?,
        };
    }
    Some(cur)
}

fn remove_path(v: &mut Yaml, path: &[Seg]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    if let (Some(p), Seg::Key(k)) = (get_mut(v, parent), last)
        && let Some(m) = p.as_mapping_mut()
    {
        m.remove(key(k));
    }
}

fn to_json(v: &Yaml) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Converts one Argo document in place; returns (unsupported findings, notes).
fn convert_document(file: &str, doc: &Document, y: &mut Yaml) -> (Vec<String>, Vec<String>) {
    let mut unsupported = vec![];
    let mut notes = vec![];
    let kind = y["kind"].as_str().unwrap_or_default().to_string();
    let name = y["metadata"]["name"].as_str().unwrap_or("?").to_string();
    if let Some(m) = y.as_mapping_mut() {
        m.insert(key("apiVersion"), key(API_VERSION));
        m.remove(key("status"));
    }
    if let Some(meta) = y.get_mut("metadata").and_then(Yaml::as_mapping_mut) {
        for k in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(key(k));
        }
    }
    if kind == "Rollout" {
        // selector: required by the API (Argo tolerates its absence in some versions).
        let has_selector = y["spec"].get("selector").is_some();
        let labels = y["spec"]["template"]["metadata"]["labels"].clone();
        if !has_selector
            && labels.as_mapping().is_some_and(|m| !m.is_empty())
            && let Some(spec) = y.get_mut("spec").and_then(Yaml::as_mapping_mut)
        {
            let mut sel = serde_yaml::Mapping::new();
            sel.insert(key("matchLabels"), labels);
            spec.insert(key("selector"), Yaml::Mapping(sel));
            notes.push(format!(
                "{kind} {name}: added spec.selector.matchLabels from spec.template.metadata.labels (selector is required)"
            ));
        }
        // A routed canary needs both Services.
        if let Some(canary) = y
            .get_mut("spec")
            .and_then(|s| s.get_mut("strategy"))
            .and_then(|s| s.get_mut("canary"))
            .and_then(Yaml::as_mapping_mut)
            && canary.contains_key(key("trafficRouting"))
        {
            for (field, suffix) in [("canaryService", "canary"), ("stableService", "stable")] {
                if !canary.contains_key(key(field)) {
                    let svc = format!("{name}-{suffix}");
                    canary.insert(key(field), key(&svc));
                    notes.push(format!(
                        "{kind} {name}: added strategy.canary.{field}: {svc} (traffic routing needs both Services): create Service {svc} selecting the rollout's pods, like the Service the route sends to"
                    ));
                }
            }
        }
    }
    // Unsupported and unknown fields: listed and removed, deepest first.
    let json = to_json(y);
    let mut drop: Vec<Vec<Seg>> = vec![];
    for f in check_document(&json) {
        match f.severity {
            Severity::Unsupported | Severity::Unknown => {
                unsupported.push(format_finding(file, doc, &f));
                drop.push(parse_path(&f.path));
            }
            Severity::Error => {}
        }
    }
    drop.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in &drop {
        remove_path(y, p);
    }
    // A list item left empty (a step whose only action was unsupported) goes too, highest
    // index first so the others keep theirs.
    let mut empty_items: Vec<(Vec<Seg>, usize)> = drop
        .iter()
        .filter_map(|p| match p.as_slice() {
            [list @ .., Seg::Index(i), Seg::Key(_)] => Some((list.to_vec(), *i)),
            _ => None,
        })
        .filter(|(list, i)| {
            let mut item = list.clone();
            item.push(Seg::Index(*i));
            get_mut(y, &item).is_some_and(|v| v.as_mapping().is_some_and(|m| m.is_empty()))
        })
        .collect();
    empty_items.sort_by_key(|(_, i)| std::cmp::Reverse(*i));
    empty_items.dedup();
    for (list, i) in empty_items {
        if let Some(seq) = get_mut(y, &list).and_then(Yaml::as_sequence_mut)
            && i < seq.len()
        {
            seq.remove(i);
            notes.push(format!(
                "{kind} {name}: removed {}[{i}], which held only unsupported fields",
                super::lint::path_string(&list)
            ));
        }
    }
    // What the API server would still reject.
    for f in check_document(&to_json(y)) {
        if f.severity == Severity::Error {
            unsupported.push(format!(
                "{} (still invalid after conversion)",
                format_finding(file, doc, &f)
            ));
        }
    }
    (unsupported, notes)
}

/// Converts a whole file's text.
pub fn convert_text(file: &str, text: &str) -> Result<Converted, CliError> {
    let mut out = Converted::default();
    let mut parts: Vec<String> = vec![];
    for doc in documents(text) {
        let mut y: Yaml = match serde_yaml::from_str(&doc.text) {
            Ok(y) => y,
            Err(e) => {
                return Err(CliError::Usage(format!(
                    "{file}:{}: invalid YAML: {}",
                    doc.first_line,
                    super::errors::one_line(&e.to_string())
                )));
            }
        };
        let api_version = y["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = y["kind"].as_str().unwrap_or_default().to_string();
        if api_version != ARGO_API_VERSION {
            parts.push(doc.text.trim_end().to_string());
            continue;
        }
        if crd_for(&kind).is_none() {
            out.unsupported.push(format!(
                "{file}:{}: kind {kind} ({ARGO_API_VERSION}) has no Aviary equivalent: left out",
                doc.first_line
            ));
            continue;
        }
        let (unsupported, notes) = convert_document(file, &doc, &mut y);
        let mut header = vec![format!(
            "# Converted from {ARGO_API_VERSION} by kubectl aviary convert."
        )];
        header.extend(unsupported.iter().map(|u| format!("# removed: {u}")));
        header.extend(notes.iter().map(|n| format!("# note: {n}")));
        let body = serde_yaml::to_string(&y).map_err(|e| CliError::Output(e.to_string()))?;
        parts.push(format!("{}\n{}", header.join("\n"), body.trim_end()));
        out.unsupported.extend(unsupported);
        out.notes.extend(notes);
    }
    out.yaml = parts.join("\n---\n") + "\n";
    Ok(out)
}

/// `convert -f FILE`: the Aviary manifests on stdout; unsupported fields and notes on stderr;
/// exit 1 when anything was unsupported.
pub fn run(file: &Path) -> Result<i32, CliError> {
    let text = read_input(file)?;
    let name = file.display().to_string();
    let converted = convert_text(&name, &text)?;
    super::print(&converted.yaml)?;
    for n in &converted.notes {
        eprintln!("note: {n}");
    }
    for u in &converted.unsupported {
        eprintln!("unsupported: {u}");
    }
    if converted.unsupported.is_empty() {
        Ok(super::errors::exit::OK)
    } else {
        eprintln!(
            "error: {} field(s) or object(s) in {name} are not supported by Aviary (removed from the output; see above)",
            converted.unsupported.len()
        );
        Ok(super::errors::exit::NO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARGO: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: bff
spec:
  replicas: 5
  strategy:
    canary:
      pingPong: {}
      steps:
        - setWeight: 10
        - experiment: {templates: []}
      trafficRouting:
        istio:
          virtualService:
            name: bff
  template:
    metadata:
      labels:
        app: bff
    spec:
      containers:
        - name: bff
          image: ghcr.io/platform/bff:latest
---
apiVersion: v1
kind: Service
metadata:
  name: bff
spec:
  ports: [{port: 80}]
---
apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata:
  name: x
"#;

    /// The Argo manifests tests/porting.rs runs on the cluster convert with nothing removed:
    /// what Aviary now implements (job metrics, nested templates, rangeQuery, args in
    /// intervals) passes through.
    #[test]
    fn the_porting_manifests_convert_whole() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/argo");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("tests/data/argo").flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let c = convert_text("f.yaml", &text).expect("converts");
            assert!(
                c.unsupported.is_empty(),
                "{}: {:?}",
                path.display(),
                c.unsupported
            );
            assert!(
                !c.yaml.contains("argoproj.io/v1alpha1\n"),
                "{}",
                path.display()
            );
            seen += 1;
        }
        assert!(seen >= 5, "{seen}");
    }

    #[test]
    fn converts_removes_and_lists_unsupported_fields() {
        let c = convert_text("in.yaml", ARGO).expect("converts");
        assert_eq!(
            c.unsupported,
            vec![
                "in.yaml:9: spec.strategy.canary.pingPong: unsupported: canary.pingPong is not supported by Aviary: use canaryService and stableService".to_string(),
                "in.yaml:12: spec.strategy.canary.steps[1].experiment: unsupported: steps[].experiment is not supported by Aviary: use an analysis step".to_string(),
                "in.yaml:33: kind Experiment (argoproj.io/v1alpha1) has no Aviary equivalent: left out".to_string(),
            ]
        );
        assert_eq!(c.notes.len(), 4, "{:#?}", c.notes);
        let docs: Vec<serde_json::Value> = documents(&c.yaml)
            .into_iter()
            .filter_map(|d| d.value.ok())
            .collect();
        assert_eq!(docs.len(), 2);
        let ro = &docs[0];
        assert_eq!(ro["apiVersion"], "aviary.dev/v1alpha1");
        assert_eq!(ro["spec"]["selector"]["matchLabels"]["app"], "bff");
        assert_eq!(
            ro["spec"]["strategy"]["canary"]["canaryService"],
            "bff-canary"
        );
        assert!(ro["spec"]["strategy"]["canary"].get("pingPong").is_none());
        // The step whose only key was unsupported is gone.
        assert_eq!(
            ro["spec"]["strategy"]["canary"]["steps"],
            serde_json::json!([{"setWeight": 10}])
        );
        assert_eq!(docs[1]["kind"], "Service");
        assert!(
            c.yaml
                .contains("# removed: in.yaml:9: spec.strategy.canary.pingPong")
        );
        // Key order is the author's.
        let spec_pos = c.yaml.find("spec:").unwrap_or(0);
        let meta_pos = c.yaml.find("metadata:").unwrap_or(usize::MAX);
        assert!(meta_pos < spec_pos);
    }

    #[test]
    fn a_supported_manifest_converts_cleanly() {
        let text = "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: t\nspec:\n  metrics:\n  - name: m\n    successCondition: result[0] >= 0.95\n    provider:\n      prometheus:\n        query: up\n";
        let c = convert_text("t.yaml", text).expect("converts");
        assert!(c.unsupported.is_empty(), "{:?}", c.unsupported);
        assert!(c.notes.is_empty());
        let (lines, clean) = super::super::lint::lint_text("out.yaml", &c.yaml);
        assert!(clean, "{lines:?}");
    }
}
