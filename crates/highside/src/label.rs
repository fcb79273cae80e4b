//! `highside label check MARKING [OTHER]`: parse, canonicalise and compare markings.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use highside_label::Encodings;

/// The encodings file an enclave may put in its data directory.
pub const ENCODINGS_FILE: &str = "label-encodings.toml";

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
