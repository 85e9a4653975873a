//! Reading policy files and Kubernetes manifests: documents, endpoints across files, and the
//! errors that name the file, the field path and the line. Above both [`crate::config`] (what a
//! policy means) and `kube` (manifests translated into policy endpoints); the methods
//! are [`Config`]'s (`Config::load_files`, `Config::load_sources`, `Config::load_str`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, ConfigErrorKind, Conflict};
use crate::kube;
use crate::pem::MaterialReader;
use crate::raw::{RawConfig, RawEndpoint, RawListener, RawProxyProtocolIn};
use crate::source::{self, Document, FieldPath};

use crate::config::*;

impl Config {
    /// Loads policy files and Kubernetes manifests; the endpoints of all of them form one
    /// config. A directory stands for its `*.yaml`, `*.yml` and `*.json` files in name order
    /// (as `kubectl apply -f DIR` reads it). Certificate and key paths are read relative to
    /// the file that names them; `deployment` maps manifest ports and Service names to local
    /// addresses.
    pub fn load_files(
        paths: &[PathBuf],
        keys: KeyMode<'_>,
        deployment: &Deployment,
    ) -> Result<Self, ConfigError> {
        let files = expand(paths)?;
        let mut sources = Vec::with_capacity(files.len());
        for path in files {
            let text =
                std::fs::read_to_string(&path).map_err(|e| ConfigError::unreadable(&path, &e))?;
            sources.push((path, text));
        }
        let file_reader = |file: &Path| -> Box<dyn MaterialReader> {
            Box::new(crate::pem::FileReader {
                base_dir: file.parent().unwrap_or(Path::new(".")).to_path_buf(),
            })
        };
        Self::load_sources(&sources, &file_reader, keys, deployment)
    }

    /// [`Config::load_files`] over texts already read (`(name, text)`), with the material
    /// (certificates, CAs, CRLs) a file names read by `reader_for(that file)`: the browser
    /// playground passes the files a user dropped.
    pub fn load_sources(
        sources: &[(PathBuf, String)],
        reader_for: &dyn Fn(&Path) -> Box<dyn MaterialReader>,
        keys: KeyMode<'_>,
        deployment: &Deployment,
    ) -> Result<Self, ConfigError> {
        let mut config = Config {
            endpoints: Vec::new(),
            listeners: Vec::new(),
            warnings: Vec::new(),
            files: sources.iter().map(|(p, _)| p.clone()).collect(),
            notes: Vec::new(),
        };
        let mut documents = Vec::with_capacity(sources.len());
        let mut listener_files: Vec<(SocketAddr, PathBuf)> = Vec::new();
        let mut resources = Vec::new();
        for (path, text) in sources {
            let parsed = source::parse_stream(text).map_err(|e| syntax_error(e, Some(path)))?;
            if parsed.iter().any(|d| kube::is_manifest(&d.value)) {
                for doc in parsed {
                    kube::collect(path, doc, &mut resources)?;
                }
                continue;
            }
            let doc = single_document(parsed).map_err(|e| syntax_error(e, Some(path)))?;
            let reader = reader_for(path);
            let options = LoadOptions {
                reader: reader.as_ref(),
                keys,
                deployment,
            };
            let (part, doc) = Self::load_parsed(doc, Some(path), &options, config.endpoints.len())?;
            config.endpoints.extend(part.endpoints);
            config.warnings.extend(part.warnings);
            for (i, listener) in part.listeners.into_iter().enumerate() {
                if let Some((_, first)) = listener_files.iter().find(|(b, _)| *b == listener.bind) {
                    let at = FieldPath::root().key("listeners").index(i).key("bind");
                    let mut e = ConfigError::new(
                        at.clone(),
                        ConfigErrorKind::ListenerInTwoFiles {
                            bind: listener.bind.to_string(),
                            first: first.clone(),
                        },
                    );
                    e.location = doc.locate(&at);
                    e.file = Some(path.clone());
                    return Err(e);
                }
                listener_files.push((listener.bind, path.clone()));
                config.listeners.push(listener);
            }
            documents.push((path.clone(), doc));
        }
        let manifest_endpoints = if resources.is_empty() {
            Vec::new()
        } else {
            config.load_manifests(&resources, reader_for, keys, deployment)?
        };
        // Each file was checked alone; hosts may still collide across files.
        check_unique_hosts(&config.endpoints).map_err(|(i, e)| {
            if let Some((_, synth)) = manifest_endpoints.iter().find(|(n, _)| *n == i) {
                let at = FieldPath::root().key("url");
                return synth.locate(ConfigError::new(at, *e.kind), &resources);
            }
            // Files were loaded in order, so the endpoints before this file's are the others'.
            let first_of_file = config.endpoints[..i]
                .iter()
                .filter(|ep| ep.file != config.endpoints[i].file)
                .count();
            let path = relative_path(&e.path, first_of_file);
            let file = config.endpoints[i].file.clone();
            let doc = documents
                .iter()
                .find(|(p, _)| Some(p) == file.as_ref())
                .map(|(_, d)| d);
            ConfigError {
                location: doc.and_then(|d| d.locate(&path)),
                file,
                path,
                kind: e.kind,
            }
        })?;
        config.note_unused(deployment);
        Ok(config)
    }

    /// Turns the resources of every manifest into endpoints, through the same loader as a
    /// policy file. Returns each new endpoint's position with the map that locates its errors.
    fn load_manifests(
        &mut self,
        resources: &[kube::Resource],
        reader_for: &dyn Fn(&Path) -> Box<dyn MaterialReader>,
        keys: KeyMode<'_>,
        deployment: &Deployment,
    ) -> Result<Vec<(usize, kube::Synth)>, ConfigError> {
        let mut manifests = kube::Manifests::new(resources, deployment);
        let made = manifests.endpoints()?;
        self.notes.append(&mut manifests.notes);
        let mut out = Vec::with_capacity(made.len());
        for synth in made {
            let primary = &resources[synth.primary];
            let reader = reader_for(&primary.file);
            let options = LoadOptions {
                reader: reader.as_ref(),
                keys,
                deployment,
            };
            let raw: RawEndpoint = deserialize(&synth.value, FieldPath::root())
                .map_err(|e| synth.locate(e, resources))?;
            let mut warnings = Vec::new();
            let mut endpoint = Endpoint::from_raw(
                raw,
                self.endpoints.len(),
                Some(&primary.file),
                FieldPath::root(),
                &options,
                &mut warnings,
            )
            .map_err(|e| synth.locate(e, resources))?;
            endpoint.origin = synth
                .parts()
                .into_iter()
                .map(|p| format!("{} ({})", resources[p].label(), resources[p].file.display()))
                .collect();
            self.warnings
                .extend(warnings.into_iter().map(|w| synth.locate(w, resources)));
            out.push((self.endpoints.len(), synth));
            self.endpoints.push(endpoint);
        }
        Ok(out)
    }

    /// A `--listen` or `--resolve` that matches nothing is probably a typo: say so.
    fn note_unused(&mut self, deployment: &Deployment) {
        for listen in &deployment.listen {
            if !self.endpoints.iter().any(|e| e.bind == listen.address) {
                self.notes.push(format!(
                    "--listen {}={}: no endpoint of the manifests is on port {}",
                    listen.port, listen.address, listen.port
                ));
            }
        }
        for resolve in &deployment.resolve {
            let used = self.endpoints.iter().any(|e| {
                deployment.resolve_entry(&e.upstream.host, e.upstream.port) == Some(resolve)
            });
            if !used {
                let upstreams: Vec<String> = self
                    .endpoints
                    .iter()
                    .map(|e| format!("{}:{}", e.upstream.host, e.upstream.port))
                    .collect();
                self.notes.push(format!(
                    "--resolve {}:{}={}: no upstream has that name and port (upstreams: {})",
                    resolve.name,
                    resolve.port,
                    resolve.address,
                    upstreams.join(", ")
                ));
            }
        }
    }

    /// Loads a policy from text. `file` names it in errors; `first_index` numbers endpoints
    /// when several files are combined.
    pub fn load_str(
        text: &str,
        file: Option<&Path>,
        options: &LoadOptions<'_>,
        first_index: usize,
    ) -> Result<Self, ConfigError> {
        let doc = source::parse(text).map_err(|e| syntax_error(e, file))?;
        Self::load_parsed(doc, file, options, first_index).map(|(config, _)| config)
    }

    fn load_parsed(
        doc: Document,
        file: Option<&Path>,
        options: &LoadOptions<'_>,
        first_index: usize,
    ) -> Result<(Self, Document), ConfigError> {
        let with_file = |mut e: ConfigError, doc: Option<&Document>| {
            e.file = file.map(Path::to_path_buf);
            if e.location.is_none() {
                e.location = doc.and_then(|d| d.locate(&e.path));
            }
            e
        };
        let raw: RawConfig =
            deserialize(&doc.value, FieldPath::root()).map_err(|e| with_file(e, Some(&doc)))?;
        let mut warnings = Vec::new();
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let RawConfig {
            endpoints: raw_endpoints,
            listeners: raw_listeners,
        } = raw;
        if raw_endpoints.is_empty() {
            return Err(with_file(
                ConfigError::new(
                    FieldPath::root().key("endpoints"),
                    ConfigErrorKind::NoEndpoints,
                ),
                Some(&doc),
            ));
        }
        for (i, raw) in raw_endpoints.into_iter().enumerate() {
            let path = FieldPath::root().key("endpoints").index(i);
            let endpoint =
                Endpoint::from_raw(raw, first_index + i, file, path, options, &mut warnings)
                    .map_err(|e| with_file(e, Some(&doc)))?;
            endpoints.push(endpoint);
        }
        check_unique_hosts(&endpoints).map_err(|(_, e)| with_file(e, Some(&doc)))?;
        let listeners =
            listener_options(raw_listeners, &endpoints).map_err(|e| with_file(e, Some(&doc)))?;
        let warnings = warnings
            .into_iter()
            .map(|w| with_file(w, Some(&doc)))
            .collect();
        Ok((
            Config {
                endpoints,
                listeners,
                warnings,
                files: file.map(Path::to_path_buf).into_iter().collect(),
                notes: Vec::new(),
            },
            doc,
        ))
    }
}

fn syntax_error(e: source::SyntaxError, file: Option<&Path>) -> ConfigError {
    ConfigError {
        file: file.map(Path::to_path_buf),
        path: FieldPath::root(),
        location: e.location,
        kind: Box::new(ConfigErrorKind::Syntax(e.message)),
    }
}

/// The one document of a tlsgate policy file.
fn single_document(mut docs: Vec<Document>) -> Result<Document, source::SyntaxError> {
    match docs.len() {
        1 => Ok(docs.remove(0)),
        0 => Err(source::SyntaxError {
            message: "the file is empty; a policy needs an `endpoints:` list".into(),
            location: None,
        }),
        n => Err(source::SyntaxError {
            message: format!(
                "the file holds {n} YAML documents and they are not Kubernetes resources; a \
                 tlsgate policy is one document (split the others into their own files)"
            ),
            location: None,
        }),
    }
}

/// The files `-c` names: a directory stands for its `*.yaml`, `*.yml` and `*.json` files in
/// name order.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| ConfigError::unreadable(path, &e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ConfigError::in_file(path, ConfigErrorKind::EmptyDirectory));
        }
        out.extend(files);
    }
    Ok(out)
}

/// Rewrites `endpoints[N]…` to `endpoints[first]…` numbering.
fn relative_path(path: &FieldPath, first: usize) -> FieldPath {
    let mut out = FieldPath::root();
    for (n, segment) in path.segments().iter().enumerate() {
        out = match segment {
            crate::source::Segment::Index(i) if n == 1 => out.index(i - first),
            crate::source::Segment::Index(i) => out.index(*i),
            crate::source::Segment::Key(k) => out.key(k),
        };
    }
    out
}

/// `listeners:`: each entry names the bind of one of the file's endpoints, once.
fn listener_options(
    raw: Vec<RawListener>,
    endpoints: &[Endpoint],
) -> Result<Vec<ListenerOptions>, ConfigError> {
    let mut out: Vec<ListenerOptions> = Vec::with_capacity(raw.len());
    for (
        i,
        RawListener {
            bind,
            proxy_protocol,
        },
    ) in raw.into_iter().enumerate()
    {
        let at = FieldPath::root().key("listeners").index(i);
        let bind: SocketAddr = bind.parse().map_err(|_| {
            ConfigError::new(
                at.key("bind"),
                ConfigErrorKind::BadAddress {
                    value: (&bind).into(),
                    expected: "an address; write IP:PORT as endpoints do",
                },
            )
        })?;
        if !endpoints.iter().any(|e| e.bind == bind) {
            return Err(ConfigError::new(
                at.key("bind"),
                ConfigErrorKind::ListenerWithoutEndpoint {
                    bind: bind.to_string(),
                    binds: endpoints.iter().map(|e| e.bind.to_string()).collect(),
                },
            ));
        }
        if out.iter().any(|l| l.bind == bind) {
            return Err(ConfigError::new(
                at.key("bind"),
                ConfigErrorKind::ListenerRepeated {
                    bind: bind.to_string(),
                },
            ));
        }
        let proxy_protocol = match proxy_protocol {
            None => None,
            Some(RawProxyProtocolIn { trusted_sources }) => {
                let pp = at.key("proxy_protocol").key("trusted_sources");
                if trusted_sources.is_empty() {
                    return Err(ConfigError::new(pp, ConfigErrorKind::NoTrustedSources));
                }
                let trusted_sources = trusted_sources
                    .iter()
                    .enumerate()
                    .map(|(j, text)| {
                        crate::net::parse_range(text).ok_or_else(|| {
                            ConfigError::new(
                                pp.clone().index(j),
                                ConfigErrorKind::BadAddress {
                                    value: text.into(),
                                    expected: "an address or CIDR range (10.0.0.0/8, \
                                               2001:db8::/32)",
                                },
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Some(ProxyProtocolIn { trusted_sources })
            }
        };
        out.push(ListenerOptions {
            bind,
            proxy_protocol,
        });
    }
    Ok(out)
}

/// Two endpoints on one bind may not claim the same host, nor mix https and tls (one listener
/// speaks one protocol after the handshake). Returns the position of the offending endpoint.
fn check_unique_hosts(endpoints: &[Endpoint]) -> Result<(), (usize, ConfigError)> {
    for (i, a) in endpoints.iter().enumerate() {
        for b in &endpoints[..i] {
            let at = |key: &str| FieldPath::root().key("endpoints").index(i).key(key);
            let other = || match (&b.file, a.file == b.file) {
                (Some(file), false) => format!("{} in {}", b.url, file.display()),
                _ => format!("endpoints[{}]", b.index - endpoints[0].index),
            };
            if a.bind == b.bind && a.host == b.host {
                let other = other();
                let kind = ConfigErrorKind::DuplicateHost {
                    host: a.host.to_string(),
                    bind: a.bind.to_string(),
                    other,
                };
                return Err((i, ConfigError::new(at("url"), kind)));
            }
            if a.bind == b.bind && a.scheme != b.scheme {
                let kind = Conflict::SchemesShareBind {
                    url: a.url.clone(),
                    bind: a.bind.to_string(),
                    other: other(),
                }
                .into();
                return Err((i, ConfigError::new(at("bind"), kind)));
            }
        }
    }
    Ok(())
}
