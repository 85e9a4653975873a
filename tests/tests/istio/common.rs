//! What the istio tests share: the CRD schemas, running `tlsgate istio`, and checking and
//! normalizing its output.

use super::*;

/// The CRDs' schemas by (apiVersion, kind), and the two built-in shapes the output also uses:
/// ObjectMeta (the fields written) and core/v1 Secret.
pub(crate) struct Schemas(Vec<(String, String, Value)>);

impl Schemas {
    pub(crate) fn load() -> Self {
        let path = repo_root().join("tests/fixtures/istio/crds.yaml");
        let text = std::fs::read_to_string(&path).expect("the vendored CRDs");
        let mut out = Vec::new();
        for doc in tlsgate_core::source::parse_stream(&text).expect("CRDs parse") {
            let crd = doc.value;
            let group = crd["spec"]["group"].as_str().expect("group");
            let kind = crd["spec"]["names"]["kind"].as_str().expect("kind");
            for version in crd["spec"]["versions"].as_array().expect("versions") {
                let name = version["name"].as_str().expect("version");
                out.push((
                    format!("{group}/{name}"),
                    kind.to_owned(),
                    version["schema"]["openAPIV3Schema"].clone(),
                ));
            }
        }
        out.push((
            "v1".into(),
            "Secret".into(),
            json!({"type": "object", "properties": {
                "type": {"type": "string"},
                "data": {"type": "object", "additionalProperties": {"type": "string"}},
                "stringData": {"type": "object", "additionalProperties": {"type": "string"}},
                "immutable": {"type": "boolean"}}}),
        ));
        Self(out)
    }

    /// Every error in one resource, each with its path.
    pub(crate) fn check(&self, resource: &Value) -> Vec<String> {
        let api_version = resource["apiVersion"].as_str().unwrap_or_default();
        let kind = resource["kind"].as_str().unwrap_or_default();
        let Some((_, _, schema)) = self
            .0
            .iter()
            .find(|(v, k, _)| v == api_version && k == kind)
        else {
            return vec![format!("no schema for {api_version} {kind}")];
        };
        let metadata = json!({"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 253},
            "namespace": {"type": "string", "maxLength": 63},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}});
        let mut errors = Vec::new();
        schema::validate(&metadata, &resource["metadata"], "metadata", &mut errors);
        let mut body = resource.clone();
        if let Some(object) = body.as_object_mut() {
            for key in ["apiVersion", "kind", "metadata"] {
                object.remove(key);
            }
        }
        schema::validate(schema, &body, kind, &mut errors);
        errors
    }
}

pub(crate) fn istio(dir: &Path, args: &[&str]) -> RunResult {
    let mut cmd = Command::new(tlsgate_bin());
    cmd.current_dir(dir).arg("istio").args(args);
    run_bounded(cmd, b"", Duration::from_secs(60))
}

pub(crate) fn documents(yaml: &str) -> Vec<Value> {
    tlsgate_core::source::parse_stream(yaml)
        .expect("the output parses")
        .into_iter()
        .map(|d| d.value)
        .collect()
}

pub(crate) fn assert_valid(schemas: &Schemas, yaml: &str) -> Vec<Value> {
    let docs = documents(yaml);
    assert!(!docs.is_empty());
    for doc in &docs {
        let errors = schemas.check(doc);
        assert!(errors.is_empty(), "{errors:#?}\nin\n{doc:#}");
    }
    docs
}

/// Certificate bodies differ per run; the rest is the contract.
pub(crate) fn normalize(yaml: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in yaml.lines() {
        let text = line.trim_start();
        if text.starts_with("-----BEGIN ") {
            inside = true;
            out.push_str(line);
            out.push('\n');
            out.push_str(&line.replace(text, "..."));
            out.push('\n');
        } else if text.starts_with("-----END ") {
            inside = false;
            out.push_str(line);
            out.push('\n');
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
