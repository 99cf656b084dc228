//! The `nodewright` command: parses flags and starts things; the work lives in the library crates.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use nodewright_api::{crds, parse_objects};

/// Just-in-time node provisioning for Kubernetes, speaking Karpenter's v1 API.
#[derive(Debug, Parser)]
#[command(name = "nodewright", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition as YAML (or write one file per CRD).
    Crds(CrdsArgs),
    /// Check NodePool, NodeClaim, EC2NodeClass, NodeOverlay and CapacityBuffer manifests the way
    /// the API server and the controllers would, reporting every problem with its field.
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
struct CrdsArgs {
    /// Write `<group>_<plural>.yaml` files into this directory instead of printing.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// Manifest files or directories (searched for .yaml, .yml and .json files).
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        // A closed pipe (`nodewright crds | head`) is the reader's choice, not a failure.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Crds(args) => print_crds(&args).map(|()| ExitCode::SUCCESS),
        Command::Validate(args) => validate(&args),
    }
}

fn print_crds(args: &CrdsArgs) -> Result<()> {
    let Some(dir) = &args.output_dir else {
        let yaml = crds::all_to_yaml().context("rendering CRDs")?;
        io::stdout()
            .lock()
            .write_all(yaml.as_bytes())
            .context("writing CRDs")?;
        return Ok(());
    };
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for crd in crds::all() {
        let path = dir.join(crds::file_name(&crd));
        let yaml = crds::to_yaml(&crd).context("rendering CRD")?;
        fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn validate(args: &ValidateArgs) -> Result<ExitCode> {
    let mut files = Vec::new();
    for path in &args.paths {
        collect_manifests(path, &mut files)?;
    }
    if files.is_empty() {
        bail!("no .yaml, .yml or .json files found");
    }
    let mut out = io::stdout().lock();
    let mut failures = 0usize;
    let mut checked = 0usize;
    for file in files {
        let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let name = file.display().to_string();
        match parse_objects(&text, &name) {
            Err(error) => {
                failures += 1;
                writeln!(out, "{error}")?;
            }
            Ok(objects) => {
                for object in objects {
                    checked += 1;
                    match object.validate() {
                        Ok(()) => writeln!(out, "{name}: {object}: valid")?,
                        Err(invalid) => {
                            failures += 1;
                            writeln!(out, "{name}: {invalid}")?;
                        }
                    }
                }
            }
        }
    }
    writeln!(out, "{checked} objects checked, {failures} with problems")?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn collect_manifests(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let metadata = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if metadata.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", path.display()))?;
    entries.sort_by_key(fs::DirEntry::path);
    for entry in entries {
        let child = entry.path();
        let is_manifest = child
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if child.is_dir() {
            collect_manifests(&child, out)?;
        } else if is_manifest {
            out.push(child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
