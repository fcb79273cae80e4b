//! Metering arithmetic with no I/O, so every rule can be tested exactly: money in integer
//! micro-dollars ([`Micros`]), what tokens cost under a model's prices ([`Price`]), monthly
//! invoices under an agency's contract plan ([`invoice`]), and the GCRA rate limiter
//! ([`Gcra`]). No floating point touches money anywhere.
#![forbid(unsafe_code)]

mod gcra;
mod invoice;
mod money;

pub use gcra::{Gcra, GcraError};
pub use invoice::{invoice, ContractPlan, Invoice, InvoiceLine, PlanError, Usage};
pub use money::{Micros, MoneyError, Price};
