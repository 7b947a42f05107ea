//! Go's own output for a few templates (from `argo-hash`, hack/argo-tools); tests/argo_hash.rs
//! compares many more with Go directly.

use serde_json::json;

use super::*;

fn go_json(v: Value) -> String {
    let t: PodTemplateSpec = serde_json::from_value(v).expect("template");
    pod_template_json(&t).expect("go json")
}

#[test]
fn fields_in_go_order_with_go_zero_values() {
    assert_eq!(
        go_json(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}
        })),
        r#"{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1","resources":{}}]}}"#
    );
}

#[test]
fn html_and_control_characters_are_escaped_as_go_does() {
    let mut out = String::new();
    string("a<b>&c\n\t\u{8}\u{c}\u{1} \u{2028}é\"\\", &mut out);
    assert_eq!(out, r#""a\u003cb\u003e\u0026c\n\t\b\f\u0001 \u2028é\"\\""#);
}

#[test]
fn empty_lists_and_maps_are_omitted_and_structs_kept_and_quantities_canonical() {
    assert_eq!(
        go_json(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [{
                    "name": "web", "image": "nginx:1",
                    "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "1000m", "memory": "1Gi"}},
                    "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}}
                }],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "securityContext": {},
                "tolerations": []
            }
        })),
        concat!(
            r#"{"metadata":{"labels":{"app":"web"}},"spec":{"volumes":[{"name":"v","emptyDir":{}}],"#,
            r#""containers":[{"name":"web","image":"nginx:1","ports":[{"containerPort":80}],"#,
            r#""env":[{"name":"A","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],"#,
            r#""resources":{"limits":{"cpu":"1","memory":"1Gi"}},"#,
            r#""readinessProbe":{"httpGet":{"path":"/","port":"http"}}}],"securityContext":{}}}"#
        )
    );
}

#[test]
fn a_value_go_cannot_decode_is_an_error_naming_where() {
    let t: PodTemplateSpec = serde_json::from_value(json!({
        "spec": {"containers": [{"name": "web", "resources": {"limits": {"cpu": "lots"}}}]}
    }))
    .expect("template");
    let err = pod_template_json(&t).expect_err("not a quantity");
    assert!(
        err.to_string()
            .starts_with(".spec.containers[0].resources.limits.cpu"),
        "{err}"
    );
}
