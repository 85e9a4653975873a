//! Following references between resources: lookups across namespaces (with the
//! `ReferenceGrant`s they need), and the certificates, keys and CAs held in `Secret`s and
//! `ConfigMap`s.

use base64::Engine as _;

use super::*;

impl Manifests<'_> {
    /// The resource a reference names. A reference into another namespace needs a
    /// `ReferenceGrant` there, as Gateway API requires of every cross-namespace reference.
    pub fn lookup(
        &self,
        from: usize,
        at: &FieldPath,
        (group, kind): (&str, &'static str),
        namespace: Option<&str>,
        name: &str,
    ) -> Result<usize, ConfigError> {
        let source = &self.resources[from];
        let namespace = namespace.unwrap_or(&source.namespace);
        self.check_grant(from, at, (group, kind), namespace, name)?;
        self.resources
            .iter()
            .position(|r| r.is(group, kind) && r.namespace == namespace && r.name == name)
            .ok_or_else(|| {
                let files: Vec<String> = {
                    let mut f: Vec<String> = self
                        .resources
                        .iter()
                        .map(|r| r.file.display().to_string())
                        .collect();
                    f.dedup();
                    f
                };
                source.error(
                    at,
                    Reference::NotFound {
                        kind,
                        namespace: namespace.into(),
                        name: name.into(),
                        files,
                    },
                )
            })
    }

    /// A reference from `from` into `namespace`: allowed in its own namespace, or where a
    /// `ReferenceGrant` there allows it.
    pub fn check_grant(
        &self,
        from: usize,
        at: &FieldPath,
        (group, kind): (&str, &'static str),
        namespace: &str,
        name: &str,
    ) -> Result<(), ConfigError> {
        let source = &self.resources[from];
        if namespace == source.namespace || self.granted(source, (group, kind), namespace, name) {
            return Ok(());
        }
        Err(source.error(
            at,
            Reference::NotGranted {
                kind,
                namespace: namespace.into(),
                name: name.into(),
                from_kind: source.kind.clone(),
                from_namespace: source.namespace.clone(),
            },
        ))
    }

    fn granted(
        &self,
        from: &Resource,
        (group, kind): (&str, &'static str),
        namespace: &str,
        name: &str,
    ) -> bool {
        #[derive(Deserialize)]
        struct Grant {
            #[serde(default)]
            from: Vec<Peer>,
            #[serde(default)]
            to: Vec<Peer>,
        }
        #[derive(Deserialize)]
        struct Peer {
            #[serde(default)]
            group: String,
            kind: String,
            #[serde(default)]
            namespace: Option<String>,
            #[serde(default)]
            name: Option<String>,
        }
        self.resources
            .iter()
            .filter(|r| r.is(GATEWAY_GROUP, "ReferenceGrant") && r.namespace == namespace)
            .filter_map(|r| r.spec::<Grant>().ok())
            .any(|g| {
                g.from.iter().any(|p| {
                    p.group == from.group
                        && p.kind == from.kind
                        && p.namespace.as_deref() == Some(from.namespace.as_str())
                }) && g.to.iter().any(|p| {
                    p.group == group
                        && p.kind == kind
                        && p.name.as_deref().is_none_or(|n| n == name)
                })
            })
    }

    /// `tls.crt` and `tls.key` of a `kubernetes.io/tls` Secret: (certificate PEM, key PEM,
    /// their paths in the Secret).
    pub fn tls_secret(&self, secret: usize) -> Result<(Located, Located), ConfigError> {
        let r = &self.resources[secret];
        if let Some(t) = r.value.get("type").and_then(Value::as_str) {
            if t != "kubernetes.io/tls" && t != "Opaque" {
                return Err(r.error(
                    &FieldPath::root().key("type"),
                    ObjectData::SecretType { found: t.into() },
                ));
            }
        }
        Ok((self.data(secret, "tls.crt")?, self.data(secret, "tls.key")?))
    }

    /// A key of a Secret's or ConfigMap's data, as text: `stringData`/`data` (a Secret's `data`
    /// is base64, a ConfigMap's is text) or `binaryData` (base64).
    pub fn data(&self, resource: usize, key: &str) -> Result<(String, FieldPath), ConfigError> {
        let r = &self.resources[resource];
        let secret = r.kind == "Secret";
        let fields: &[(&str, bool)] = if secret {
            &[("stringData", false), ("data", true)]
        } else {
            &[("data", false), ("binaryData", true)]
        };
        for (field, base64) in fields {
            let path = FieldPath::root().key(field).key(key);
            let Some(value) = r.value.get(field).and_then(|d| d.get(key)) else {
                continue;
            };
            let Some(text) = value.as_str() else {
                return Err(r.error(&path, ObjectData::NotAString));
            };
            if !base64 {
                return Ok((text.to_owned(), path));
            }
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|e| {
                    r.error(
                        &path,
                        ObjectData::NotBase64 {
                            reason: e.to_string(),
                        },
                    )
                })?;
            let text = String::from_utf8(bytes).map_err(|_| r.error(&path, ObjectData::NotText))?;
            return Ok((text, path));
        }
        let present: Vec<String> = fields
            .iter()
            .filter_map(|(f, _)| r.value.get(f).and_then(Value::as_object))
            .flat_map(|m| m.keys().cloned())
            .collect();
        Err(r.error(
            &FieldPath::root().key(fields[1].0),
            ObjectData::NoKey {
                key: key.into(),
                present,
            },
        ))
    }

    /// The PEM of `ca.crt` in each ConfigMap (or Secret) of `refs`, for trust anchors.
    pub fn ca_refs(
        &self,
        from: usize,
        refs: &[ObjectRef],
        at: &FieldPath,
        synth: &mut Synth,
        synth_at: &FieldPath,
    ) -> Result<Vec<Value>, ConfigError> {
        let mut out = Vec::new();
        for (i, reference) in refs.iter().enumerate() {
            let path = at.index(i);
            let kind = match reference.kind.as_deref() {
                None | Some("ConfigMap") => "ConfigMap",
                Some("Secret") => "Secret",
                Some(other) => {
                    return Err(self.resources[from].error(
                        &path.key("kind"),
                        Reference::AuthorityKind { kind: other.into() },
                    ))
                }
            };
            let target = self.lookup(
                from,
                &path,
                ("", kind),
                reference.namespace.as_deref(),
                &reference.name,
            )?;
            let (pem, pem_path) = self.data(target, "ca.crt")?;
            synth.from(synth_at.index(out.len()), target, pem_path);
            out.push(Value::String(pem));
        }
        Ok(out)
    }
}
