//! `highside label check MARKING [OTHER]`: parse, canonicalise and compare markings.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use highside_label::Encodings;

/// The encodings file an enclave may put in its data directory.
pub const ENCODINGS_FILE: &str = "label-encodings.toml";

/// The agency policies (Cedar) in the data directory.
pub const POLICIES_FILE: &str = "policies.cedar";

/// What `init` writes to `policies.cedar`: permit what the mandatory check allows, with
/// examples of the restrictions an enclave adds.
pub const DEFAULT_POLICIES: &str = r#"// Agency policies for Highside's reference monitor, in Cedar (https://www.cedarpolicy.com).
// They are checked against Highside's schema when the server starts (a policy that does not
// type-check stops the start). They run only after the mandatory label check has allowed a
// request, and a request runs only if they permit it too: they can deny more, never less.
// The schema: principal Highside::User (in Highside::Agency::"agency_..." and
// Highside::Role::"user"...), resource Highside::Model::"name", action Highside::Action::"infer",
// context.label / context.declared (level, level_name, compartments, unrestricted,
// releasable_to, dissemination, cui), context.detected, context.pii.

@id("default-permit")
permit(principal, action, resource);

// Examples (remove the leading slashes to use them):
//
// Only one agency may use a model:
// @id("ts-model-for-ops-only")
// forbid(principal, action, resource == Highside::Model::"ts-analyst")
//   unless { principal in Highside::Agency::"agency_0123456789abcdef" };
//
// ORCON material only for users who are also auditors:
// @id("orcon-needs-auditor")
// forbid(principal, action, resource)
//   when { context.label.dissemination.contains("ORCON") }
//   unless { principal in Highside::Role::"auditor" };
//
// Nobody may declare TOP SECRET without the agency-admin role:
// @id("declare-ts")
// forbid(principal, action, resource)
//   when { context.declared.level >= 4 }
//   unless { principal in Highside::Role::"agency-admin" };
"#;

/// Loads the agency policies: DATA/policies.cedar, or permit-all when there is none.
pub fn policies(data: &Path) -> anyhow::Result<highside_monitor::Policies> {
    let path = data.join(POLICIES_FILE);
    if !path.is_file() {
        return Ok(highside_monitor::Policies::permit_all());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    highside_monitor::Policies::parse(&text).with_context(|| format!("in {}", path.display()))
}

#[derive(Subcommand)]
pub enum LabelCommand {
    /// Print a marking's canonical banner and portion mark; with a second marking, compare them.
    Check {
        /// A banner line (`TOP SECRET//SI/TK//NOFORN`) or portion mark (`(TS//SI//NF)`).
        marking: String,
        /// A second marking to compare with the first.
        other: Option<String>,
        /// Label encodings file (default: DATA/label-encodings.toml, else the built-in ones).
        #[arg(long)]
        encodings: Option<PathBuf>,
    },
}

/// Loads the enclave's encodings: an explicit file, the data directory's, or the built-in.
pub fn encodings(data: &Path, explicit: Option<&Path>) -> anyhow::Result<Encodings> {
    let in_data = data.join(ENCODINGS_FILE);
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if in_data.is_file() => in_data,
        None => return Ok(Encodings::builtin()),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Encodings::from_toml(&text).with_context(|| format!("in {}", path.display()))
}

pub fn run(data: &Path, cmd: LabelCommand) -> anyhow::Result<()> {
    let LabelCommand::Check {
        marking,
        other,
        encodings: file,
    } = cmd;
    let enc = encodings(data, file.as_deref())?;
    let a = enc
        .parse(&marking)
        .with_context(|| format!("'{marking}' is not a valid marking"))?;
    println!("banner:  {}", enc.banner(&a));
    println!("portion: {}", enc.portion(&a));
    if let Some(other) = other {
        let b = enc
            .parse(&other)
            .with_context(|| format!("'{other}' is not a valid marking"))?;
        println!("other:   {}", enc.banner(&b));
        let relation = match (a.dominates(&b), b.dominates(&a)) {
            (true, true) => "equal",
            (true, false) => "the first dominates the second",
            (false, true) => "the second dominates the first",
            (false, false) => "incomparable (neither dominates the other)",
        };
        println!("compare: {relation}");
        println!("join:    {}", enc.banner(&a.join(&b)));
        println!("meet:    {}", enc.banner(&a.meet(&b)));
    }
    Ok(())
}
