use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use highside_engine::Engine;
use highside_label::Label;
use highside_providers::Deployment;
use highside_template::ChatTemplate;

/// The highest label a model is accredited to process, with its canonical banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accreditation {
    /// The label.
    pub label: Label,
    /// Its canonical banner.
    pub banner: String,
}

/// A model ready to serve: its engine and its compiled chat template.
#[derive(Debug)]
pub struct LoadedModel {
    /// The public name.
    pub name: String,
    /// Import time, Unix seconds, for `/v1/models`.
    pub created: u64,
    /// The engine that owns the model's context.
    pub engine: Engine,
    /// The chat template, or why there is none usable (reported on chat requests).
    pub template: Result<ChatTemplate, String>,
    /// The model's accreditation; an operator may change it while the server runs.
    pub accreditation: RwLock<Accreditation>,
}

impl LoadedModel {
    /// The accreditation in force now.
    pub fn accreditation(&self) -> Accreditation {
        self.accreditation
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the accreditation; the next request is decided against the new one.
    pub fn set_accreditation(&self, a: Accreditation) {
        *self
            .accreditation
            .write()
            .unwrap_or_else(|p| p.into_inner()) = a;
    }
}

/// An embedding model ready to serve.
#[derive(Debug)]
pub struct EmbeddingModel {
    /// The public name.
    pub name: String,
    /// Import time, Unix seconds.
    pub created: u64,
    /// The encoder.
    pub embedder: highside_embed::Embedder,
    /// Its accreditation; an operator may change it while the server runs.
    pub accreditation: RwLock<Accreditation>,
}

impl EmbeddingModel {
    /// The accreditation in force now.
    pub fn accreditation(&self) -> Accreditation {
        self.accreditation
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A public model name served by external deployments.
#[derive(Debug)]
pub struct UpstreamRoute {
    /// The name clients ask for.
    pub name: String,
    /// Its deployments with their weights.
    pub targets: Vec<(Arc<Deployment>, u32)>,
    /// Attempts per deployment on retryable errors.
    pub attempts: u32,
    /// Configuration order of first appearance, for `/v1/models`.
    pub created: u64,
}

/// Every loaded model and upstream route, by name.
#[derive(Debug, Default)]
pub struct Registry {
    models: BTreeMap<String, LoadedModel>,
    routes: BTreeMap<String, UpstreamRoute>,
    embedders: BTreeMap<String, EmbeddingModel>,
}

impl Registry {
    /// Adds a loaded model.
    pub fn insert(&mut self, model: LoadedModel) {
        self.models.insert(model.name.clone(), model);
    }

    /// Adds an upstream route; a name already taken by an embedded model is refused.
    pub fn insert_route(&mut self, route: UpstreamRoute) -> Result<(), String> {
        if self.models.contains_key(&route.name)
            || self.routes.contains_key(&route.name)
            || self.embedders.contains_key(&route.name)
        {
            return Err(format!(
                "the model name '{}' is both an imported model and a route",
                route.name
            ));
        }
        self.routes.insert(route.name.clone(), route);
        Ok(())
    }

    /// Adds an embedding model.
    pub fn insert_embedding(&mut self, model: EmbeddingModel) {
        self.embedders.insert(model.name.clone(), model);
    }

    /// Finds an embedding model by its public name.
    pub fn embedding(&self, name: &str) -> Option<&EmbeddingModel> {
        self.embedders.get(name)
    }

    /// All embedding models, by name.
    pub fn embeddings(&self) -> impl Iterator<Item = &EmbeddingModel> {
        self.embedders.values()
    }

    /// Finds an upstream route by its public name.
    pub fn route(&self, name: &str) -> Option<&UpstreamRoute> {
        self.routes.get(name)
    }

    /// All upstream routes, by name.
    pub fn routes(&self) -> impl Iterator<Item = &UpstreamRoute> {
        self.routes.values()
    }

    /// Every deployment some route uses, once each.
    pub fn deployments(&self) -> Vec<Arc<Deployment>> {
        let mut out: Vec<Arc<Deployment>> = Vec::new();
        for r in self.routes.values() {
            for (d, _) in &r.targets {
                if !out.iter().any(|o| Arc::ptr_eq(o, d)) {
                    out.push(Arc::clone(d));
                }
            }
        }
        out
    }

    /// Finds a model by its public name.
    pub fn get(&self, name: &str) -> Option<&LoadedModel> {
        self.models.get(name)
    }

    /// All models, by name.
    pub fn iter(&self) -> impl Iterator<Item = &LoadedModel> {
        self.models.values()
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether nothing can be served: no model loaded and no route.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty() && self.routes.is_empty() && self.embedders.is_empty()
    }

    /// Tells every engine to cancel its work and stop.
    pub fn begin_shutdown(&self) {
        for m in self.models.values() {
            m.engine.begin_shutdown();
        }
    }
}
