//! A node's backends from its catalog and configuration: every imported model loaded (GGUF
//! structure re-checked first) or every encoder, and the deployments and routes of
//! `highside.toml`. Anything that does not parse or load refuses the start rather than serve
//! with a guess.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use highside_config::Config;
use highside_engine::{Engine, EngineConfig};
use highside_label::Encodings;
use highside_providers::{Credential, Deployment, Settings};
use highside_store::{DataDir, ModelFormat, Store};
use highside_template::ChatTemplate;

use crate::{Accreditation, EmbeddingModel, LoadedModel, Registry, UpstreamRoute};

/// Why a node's backends could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The catalog could not be read.
    #[error(transparent)]
    Store(#[from] highside_store::StoreError),
    /// A model's accreditation no longer parses under the label encodings.
    #[error("model {model}'s accreditation '{label}' is not valid under the label encodings; change it with `highside admin models label` on a running server or re-import the model")]
    Accreditation {
        /// The model.
        model: String,
        /// Its recorded accreditation.
        label: String,
    },
    /// A model file failed its structure check or llama.cpp could not load it.
    #[error("model {model} ({}) failed to load: {reason}", path.display())]
    Model {
        /// The model.
        model: String,
        /// Its file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A deployment of `highside.toml` is not usable.
    #[error("deployment '{deployment}': {reason}")]
    Deployment {
        /// Its name.
        deployment: String,
        /// What is wrong.
        reason: String,
    },
    /// A route of `highside.toml` is not usable.
    #[error("route '{route}': {reason}")]
    Route {
        /// Its public model name.
        route: String,
        /// What is wrong.
        reason: String,
    },
}

/// The catalog's `imported_at` as seconds since the epoch (for `/v1/models`' `created`); a
/// malformed time shows as 0 rather than failing.
pub fn unix_secs(rfc3339: &str) -> u64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map_or(0, |t| u64::try_from(t.unix_timestamp()).unwrap_or(0))
}

/// Every model of the catalog, loaded: generative models into engines of `engine`, embedding
/// models into encoders.
pub fn load_models(
    dir: &DataDir,
    store: &dyn Store,
    encodings: &Encodings,
    engine: &EngineConfig,
    registry: &mut Registry,
) -> Result<(), NodeError> {
    for record in store.list_models()? {
        // An accreditation that no longer parses must not be guessed at.
        let label =
            encodings
                .parse_accreditation(&record.label)
                .map_err(|_| NodeError::Accreditation {
                    model: record.name.clone(),
                    label: record.label.clone(),
                })?;
        let accreditation = RwLock::new(Accreditation {
            banner: encodings.banner(&label),
            label,
        });
        let created = unix_secs(&record.imported_at);
        let failed = |path: &Path, reason: String| NodeError::Model {
            model: record.name.clone(),
            path: path.to_path_buf(),
            reason,
        };
        if record.format == ModelFormat::Embedding {
            let path = dir.embedding_path(&record.digest);
            let embedder = highside_embed::Embedder::load(&path, &record.name)
                .map_err(|e| failed(&path, e.to_string()))?;
            tracing::info!(model = %record.name, dimensions = embedder.info().dimensions, "embedding model loaded");
            registry.insert_embedding(EmbeddingModel {
                name: record.name.clone(),
                created,
                embedder,
                accreditation,
            });
            continue;
        }
        let path = dir.model_path(&record.digest);
        // Only files the catalog validated are ever handed to llama.cpp; the structure is
        // checked again in case the store was tampered with since import.
        highside_gguf::validate_file(&path, &highside_gguf::Limits::default())
            .map_err(|e| failed(&path, e.to_string()))?;
        tracing::info!(model = %record.name, "loading");
        let engine = Engine::load(&path, engine).map_err(|e| failed(&path, e.to_string()))?;
        let info = engine.info().clone();
        let template = match &record.chat_template {
            Some(src) => {
                ChatTemplate::new(src, &info.bos_text, &info.eos_text).map_err(|e| e.to_string())
            }
            None => Err(highside_template::TemplateError::Missing.to_string()),
        };
        if let Err(e) = &template {
            tracing::warn!(model = %record.name, error = %e, "chat completions unavailable for this model");
        }
        tracing::info!(model = %record.name, context = info.context_length, "loaded");
        registry.insert(LoadedModel {
            name: record.name.clone(),
            created,
            engine,
            template,
            accreditation,
        });
    }
    Ok(())
}

/// The deployments and routes of `config` (credential files relative to `data`), into the
/// registry. A label, credential or name that does not work is an error.
pub fn upstream_routes(
    data: &Path,
    config: &Config,
    encodings: &Encodings,
    registry: &mut Registry,
) -> Result<(), NodeError> {
    let mut deployments = BTreeMap::new();
    for d in &config.deployments {
        let bad = |reason: String| NodeError::Deployment {
            deployment: d.name.clone(),
            reason,
        };
        let label = encodings
            .parse_accreditation(&d.label)
            .map_err(|_| bad(format!("label '{}' is not a valid accreditation", d.label)))?;
        let credential = match (&d.api_key_env, &d.api_key_file) {
            (Some(var), _) => {
                Some(Credential::new(&std::env::var(var).map_err(|_| {
                    bad(format!("environment variable {var} is not set"))
                })?))
            }
            (None, Some(file)) => {
                let path = data.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                Some(Credential::new(&text))
            }
            (None, None) => None,
        };
        let deployment = Deployment::new(Settings {
            name: d.name.clone(),
            protocol: d.protocol,
            url: d.url.clone(),
            model: d.model.clone(),
            banner: encodings.banner(&label),
            label,
            credential,
            connect_timeout: Duration::from_secs(d.connect_timeout_secs),
            timeout: Duration::from_secs(d.timeout_secs),
            max_concurrency: d.max_concurrency,
            context_length: d.context_length,
        })
        .map_err(|e| bad(e.to_string()))?;
        tracing::info!(deployment = %d.name, url = %d.url, label = %deployment.settings().banner, "deployment configured");
        deployments.insert(d.name.clone(), Arc::new(deployment));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for r in &config.routes {
        let bad = |reason: String| NodeError::Route {
            route: r.model.clone(),
            reason,
        };
        let targets = r
            .deployments
            .iter()
            .map(|t| match deployments.get(&t.name) {
                Some(d) => Ok((Arc::clone(d), t.weight)),
                None => Err(bad(format!("no deployment is named '{}'", t.name))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        registry
            .insert_route(UpstreamRoute {
                name: r.model.clone(),
                targets,
                attempts: r.attempts,
                created: now,
            })
            .map_err(bad)?;
        tracing::info!(model = %r.model, deployments = r.deployments.len(), "route configured");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        Config::parse(toml, "test").unwrap()
    }

    const TWO: &str = r#"
[[deployments]]
name = "low"
protocol = "openai"
url = "http://127.0.0.1:9/v1"
model = "m"
label = "UNCLASSIFIED"

[[deployments]]
name = "high"
protocol = "anthropic"
url = "http://127.0.0.1:9"
model = "m"
label = "SECRET"

[[routes]]
model = "route-1"
deployments = [{ name = "low", weight = 1 }, { name = "high", weight = 3 }]
"#;

    #[test]
    fn unix_secs_matches_known_dates() {
        assert_eq!(unix_secs("1970-01-01T00:00:00Z"), 0);
        assert_eq!(unix_secs("2001-09-09T01:46:40Z"), 1_000_000_000);
        assert_eq!(unix_secs("garbage"), 0);
    }

    #[test]
    fn routes_map_to_their_deployments_with_labels_and_weights() {
        let e = Encodings::builtin();
        let mut registry = Registry::default();
        upstream_routes(Path::new("/nonexistent"), &config(TWO), &e, &mut registry).unwrap();
        let route = registry.route("route-1").expect("the route");
        let names: Vec<_> = route
            .targets
            .iter()
            .map(|(d, w)| (d.settings().name.as_str(), d.settings().banner.as_str(), *w))
            .collect();
        assert_eq!(names, [("low", "UNCLASSIFIED", 1), ("high", "SECRET", 3)]);
        assert_eq!(registry.deployments().len(), 2);
    }

    #[test]
    fn a_deployment_that_cannot_work_refuses_the_start() {
        let e = Encodings::builtin();
        let above = TWO.replace(r#"label = "SECRET""#, r#"label = "NOT A LABEL""#);
        let err = upstream_routes(
            Path::new("/x"),
            &config(&above),
            &e,
            &mut Registry::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, NodeError::Deployment { deployment, .. } if deployment == "high"),
            "{err}"
        );
        let env = TWO.replace(
            r#"label = "UNCLASSIFIED""#,
            "label = \"UNCLASSIFIED\"\napi_key_env = \"HIGHSIDE_TEST_UNSET_VARIABLE\"",
        );
        let err = upstream_routes(Path::new("/x"), &config(&env), &e, &mut Registry::default())
            .unwrap_err();
        assert!(
            err.to_string().contains("HIGHSIDE_TEST_UNSET_VARIABLE"),
            "{err}"
        );
        let file = TWO.replace(
            r#"label = "UNCLASSIFIED""#,
            "label = \"UNCLASSIFIED\"\napi_key_file = \"missing.key\"",
        );
        let err = upstream_routes(
            Path::new("/x"),
            &config(&file),
            &e,
            &mut Registry::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("missing.key"), "{err}");
    }
}
