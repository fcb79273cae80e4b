//! The governed request path, with no HTTP types in sight: who may ask (role check), what the
//! reference monitor decides over every client string, the durable decision record, metering's
//! reservation and per-minute limits, then a backend (the embedded engine, the embedded
//! encoder or an upstream route). Every surface (OpenAI, Bedrock, and later knowledge bases,
//! agents and batch items) reaches a model only through [`Service::admit`].
#![forbid(unsafe_code)]

mod admission;
pub mod answer;
pub mod audit;
pub mod meter;
pub mod node;
pub mod output;
mod registry;
mod service;
pub mod tools;
pub mod upstream;

pub use admission::{Caller, Cost, Target, Ticket};
pub use audit::{Auditor, CompletionAudit, Unfinished};
pub use meter::{Meter, RateHeaders, Refusal};
pub use registry::{Accreditation, EmbeddingModel, LoadedModel, Registry, UpstreamRoute};
pub use service::{EmbeddingStart, EmbeddingWork, Generation, Service};
