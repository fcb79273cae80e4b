//! The native mandatory access control check: Bell-LaPadula on labels, with no policy, no I/O
//! and no way to be configured looser.

use highside_label::Label;

use crate::{Reason, Rule};

/// Who is asking, as far as the mandatory check cares.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// The user's clearance: a level and compartments (it carries no releasability).
    pub clearance: &'a Label,
    /// The user's nationality, ISO 3166-1 alpha-3.
    pub nationality: &'a str,
}

/// Decides whether `subject` may send data labelled `request` into a model accredited at
/// `model`. Returns every rule that denies; an empty list allows.
///
/// - No read up: the clearance's level is at least the request's and holds every compartment.
/// - Releasability: the request's releasability includes the user's nationality.
/// - No write down: the model's accreditation dominates the request label in level,
///   compartments and releasability (a model releasable more widely than the data may not
///   receive it).
///
/// Other dissemination controls and CUI categories do not grant or deny access here: they are
/// carried into the output label, and agency policies (Cedar) may deny on them.
pub fn check(subject: &Subject<'_>, model: &Label, request: &Label) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if subject.clearance.level() < request.level() {
        reasons.push(Reason::new(
            Rule::ReadUpLevel,
            "no read up: the request's classification level is above your clearance",
        ));
    }
    if !subject
        .clearance
        .compartments()
        .is_superset(request.compartments())
    {
        reasons.push(Reason::new(
            Rule::ReadUpCompartment,
            "no read up: the request is marked with a compartment your clearance does not include",
        ));
    }
    if !request.releasability().allows(subject.nationality) {
        reasons.push(Reason::new(
            Rule::Releasability,
            "releasability: the request is not releasable to your nationality",
        ));
    }
    if model.level() < request.level() {
        reasons.push(Reason::new(
            Rule::WriteDownLevel,
            "no write down: the model is accredited below the request's classification level",
        ));
    }
    if !model.compartments().is_superset(request.compartments()) {
        reasons.push(Reason::new(
            Rule::WriteDownCompartment,
            "no write down: the model is not accredited for a compartment the request is marked with",
        ));
    }
    if !model.releasability().within(request.releasability()) {
        reasons.push(Reason::new(
            Rule::WriteDownReleasability,
            "no write down: the model is releasable more widely than the request allows",
        ));
    }
    reasons
}
