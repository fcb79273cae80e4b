//! Classification labels: the vocabulary of the reference monitor, with no I/O.
//!
//! A [`Label`] is a level, a set of compartments (sub-compartments are compartments named
//! `SI-G`), releasability (unrestricted, `REL TO` a set of countries that always includes USA,
//! or `NOFORN` = USA only) and other dissemination controls carried along (ORCON, FOUO, CUI
//! categories). Labels form a lattice: [`Label::dominates`], [`Label::join`] and
//! [`Label::meet`]. [`Encodings`] is an enclave's vocabulary (levels, compartments, countries,
//! tetragraphs, dissemination controls, system high); parsing is always against one, and
//! anything it does not list is an error, because an error must deny.
#![forbid(unsafe_code)]

mod detect;
mod encodings;
mod fold;
mod label;
mod parse;

pub use detect::{Detector, Found, Scan, Unknown, UnknownMarking};
pub use encodings::{Encodings, EncodingsError};
pub use fold::{fold_text, is_ignorable, Folded};
pub use label::{Label, Releasability};
pub use parse::LabelError;
