use std::collections::BTreeMap;
use std::sync::RwLock;

use highside_engine::Engine;
use highside_label::Label;
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

/// Every loaded model, by name.
#[derive(Debug, Default)]
pub struct Registry {
    models: BTreeMap<String, LoadedModel>,
}

impl Registry {
    /// Adds a loaded model.
    pub fn insert(&mut self, model: LoadedModel) {
        self.models.insert(model.name.clone(), model);
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

    /// Whether no model is loaded.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Tells every engine to cancel its work and stop.
    pub fn begin_shutdown(&self) {
        for m in self.models.values() {
            m.engine.begin_shutdown();
        }
    }
}
