//! The `nodewright` command: parses flags and starts things; the work lives in the library crates.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

mod controller;
mod explain;
mod log_config;
mod logging;
mod probes;
mod sim;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nodewright_api::{crds, parse_objects};
use nodewright_catalog::{Catalog, NodeSettings};
use nodewright_solver::{
    manifests::{Manifest, problem_from_manifests},
    report::PlanReport,
};

/// mimalloc rather than the system allocator: the solver (`nodewright plan`, the provisioner,
/// consolidation) makes many small short-lived allocations, where glibc's malloc and free took
/// about a quarter of a 20,000-pod solve (benches/README.md, solver section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Plan the nodes pending pods need: a dry run, no cluster or cloud account needed.
    ///
    /// Reads NodePools, EC2NodeClasses, Pods, Deployments, ReplicaSets, StatefulSets, Jobs and
    /// DaemonSets (and Nodes with --existing), and prints the nodes to launch (NodePool, instance
    /// type, capacity type, zone, pods, $/h), the totals, the cost lower bound and gap, and why
    /// any pod cannot run. Exits 0 whenever a plan was made, even with unschedulable pods;
    /// non-zero, naming file, object and field, on bad input.
    Plan(PlanArgs),
    /// Explain, against a live cluster, why a node is kept (or would be disrupted) or why a pod
    /// is pending, with the controllers' own rules. Exits non-zero when the object is not found.
    Explain(explain::ExplainArgs),
    /// Play a scenario on a simulated cluster with the real controllers (no cloud account or
    /// cluster needed), or serve one for kubectl (`nodewright sim serve`).
    Sim(sim::SimArgs),
    /// Run the controllers against the cluster this runs in (or the kubeconfig's) with the AWS
    /// provider: what the Deployment in an EKS cluster runs.
    Controller(Box<controller::ControllerArgs>),
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

#[derive(Debug, Args)]
struct PlanArgs {
    /// Manifest files or directories (searched recursively for .yaml, .yml and .json files).
    /// Without any, the built-in demo is planned (examples/default and examples/demo).
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Nodes that already exist, and pods bound to them (`kubectl get nodes,pods -A -o yaml`);
    /// pending pods go there first. May be repeated; directories are searched too.
    #[arg(long, value_name = "FILE")]
    existing: Vec<PathBuf>,
    /// Output format; `json` and `yaml` follow the schema in docs/plan-output.md.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = PlanFormat::Table)]
    output: PlanFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    Table,
    Json,
    Yaml,
}

fn main() -> ExitCode {
    // kube's TLS asks rustls for the process-wide crypto provider; installing one fails only when
    // one is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
        Command::Plan(args) => plan(&args).map(|()| ExitCode::SUCCESS),
        Command::Sim(args) => sim::run(args).map(|()| ExitCode::SUCCESS),
        Command::Controller(args) => controller::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Explain(args) => {
            let text = explain::run(args)?;
            io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .context("writing the explanation")?;
            Ok(ExitCode::SUCCESS)
        }
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

/// What `nodewright plan` plans when given no manifests: the default NodePool and EC2NodeClass
/// and a small mixed workload, compiled in so the command works anywhere.
const DEMO_MANIFESTS: [(&str, &str); 3] = [
    (
        "examples/default/nodepool.yaml",
        include_str!("../../../examples/default/nodepool.yaml"),
    ),
    (
        "examples/default/ec2nodeclass.yaml",
        include_str!("../../../examples/default/ec2nodeclass.yaml"),
    ),
    (
        "examples/demo/workload.yaml",
        include_str!("../../../examples/demo/workload.yaml"),
    ),
];

fn plan(args: &PlanArgs) -> Result<()> {
    let mut files = Vec::new();
    for path in args.paths.iter().chain(&args.existing) {
        let before = files.len();
        collect_manifests(path, &mut files)?;
        if files.len() == before {
            bail!("no .yaml, .yml or .json files found in {}", path.display());
        }
    }
    let mut sources = Vec::new();
    if args.paths.is_empty() {
        eprintln!("no -f given: planning the built-in demo (examples/default, examples/demo)");
        sources.extend(
            DEMO_MANIFESTS
                .iter()
                .map(|(name, text)| ((*name).to_owned(), (*text).to_owned())),
        );
    }
    for file in files {
        let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        sources.push((file.display().to_string(), text));
    }
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for (source_name, text) in sources {
        match parse_objects(&text, &source_name) {
            Ok(objects) => manifests.push(Manifest { source_name, objects }),
            Err(error) => errors.push(error.to_string()),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    let catalog =
        Catalog::us_east_1(&NodeSettings::default()).context("loading the instance-type catalogue")?;
    let input = problem_from_manifests(&manifests, &catalog).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let plan = nodewright_solver::solve(&input.problem);
    let report = PlanReport::new(&input, &plan);
    let text = match args.output {
        PlanFormat::Table => report.to_table(),
        PlanFormat::Json => {
            let mut json = serde_json::to_string_pretty(&report).context("rendering the plan as JSON")?;
            json.push('\n');
            json
        }
        PlanFormat::Yaml => serde_saphyr::to_string(&report).context("rendering the plan as YAML")?,
    };
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing the plan")
}

/// Directories of `nodewright sim` scenarios, left out when a directory of manifests is walked.
const SCENARIO_DIR: &str = "scenarios";

fn collect_manifests(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let metadata = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    // Anything but a directory is read as given, so `-f <(kubectl get ... -o yaml)` works.
    if !metadata.is_dir() {
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
            // `nodewright sim` scenarios (examples/scenarios) are not manifests; a scenario
            // directory named on the command line is still read.
            if child.file_name().is_some_and(|n| n == SCENARIO_DIR) {
                continue;
            }
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
