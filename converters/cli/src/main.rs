//! `nodestamp`: the host command line.
//!
//! - `nodestamp check [--format text|json] <spec> [--build-arg K=V …]`: validate a spec offline.
//! - `nodestamp convert …`: rootfs → disk images.
//! - `nodestamp inspect [--format json|text] <disk|image tar|rootfs>`: print build provenance.
//!
//! Exit codes: 0 valid (warnings allowed), 1 the spec has errors, 2 the command could not run
//! (bad arguments, unreadable file).

mod checks;
mod convert_cmd;
mod inline_apply;
mod inspect;
mod provenance;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "nodestamp",
    version,
    about = "Kubernetes node images from a YAML spec"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a spec offline and print every diagnostic.
    Check(CheckArgs),
    /// Convert a node rootfs (directory, tar file, or `-` for a tar stream) into bootable
    /// disk images (raw, qcow2, vmdk, vhd).
    Convert(convert_cmd::ConvertArgs),
    /// Print the build provenance of a disk image, an image tar (docker save) or a rootfs.
    Inspect(InspectArgs),
    /// (Build step) Write the package database of a rootfs as JSON (packages.json of the
    /// provenance). Runs in the tools image with the OS layer mounted read-only.
    #[command(hide = true)]
    ProvenancePackages(ProvenancePackagesArgs),
    /// (Build step) Write the SPDX SBOM of a node from its provenance files (build.json,
    /// packages.json, components.json). Runs in the tools image for `--sbom=true`.
    #[command(hide = true)]
    ProvenanceSbom(ProvenanceSbomArgs),
    /// (Build step) Write the inline contents of one layer of a spec, one file per content
    /// (`f<i>` for `storage.files[i]`) and plan.json saying where each goes. Runs in the tools
    /// image with the spec file mounted read-only.
    #[command(hide = true)]
    InlineContents(InlineContentsArgs),
    /// (Build step) Write contents extracted by `inline-contents` into a layer: each replaces
    /// what is at its path, with its mode and owner. Runs in the tools image with the layer
    /// mounted.
    #[command(hide = true)]
    InlineApply(InlineApplyArgs),
    /// Pack a Kubernetes layer (directory) as a systemd system extension image
    /// (`<output-dir>/<name>.raw`, erofs). /etc content is mapped under /usr.
    Sysext(SysextArgs),
    /// (Build step) Check a container image archive (kubernetes.images) and write it into a
    /// node root under var/lib/nodestamp/images/, named by its reference. Runs in the tools
    /// image with only the archive mounted.
    #[command(hide = true)]
    ImagePrepare(ImagePrepareArgs),
    /// Run a spec's `tests:` (checks.json from the frontend) against a node rootfs, reading
    /// it without executing anything; exits 1 with one line per failed check.
    Verify(VerifyArgs),
}

#[derive(Args)]
struct InlineContentsArgs {
    /// The spec file.
    #[arg(long)]
    spec: PathBuf,
    /// The spec's name in diagnostics.
    #[arg(long)]
    name: String,
    /// `os` or `kubernetes`.
    #[arg(long)]
    layer: String,
    /// sha256 of the contents the frontend expects (see the frontend's `compile::inline`).
    #[arg(long)]
    sha256: String,
    /// The directory to write the contents into.
    #[arg(long)]
    output: PathBuf,
    /// A build arg the spec's `${VAR}` references need. Repeatable.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
}

#[derive(Args)]
struct InlineApplyArgs {
    /// The extracted contents (plan.json and the files it names).
    #[arg(long)]
    from: PathBuf,
    /// The layer's root.
    #[arg(long)]
    root: PathBuf,
    /// SOURCE_DATE_EPOCH: the time of the written files and the directories they change.
    #[arg(long)]
    epoch: Option<i64>,
}

#[derive(Args)]
struct ImagePrepareArgs {
    /// The reference the node's containerd knows the image by.
    #[arg(long = "ref")]
    reference: String,
    /// The archive.
    #[arg(long)]
    archive: PathBuf,
    /// The archive as the spec names it, for messages.
    #[arg(long)]
    name: String,
    /// The sha256 the archive must have (hex).
    #[arg(long)]
    sha256: Option<String>,
    /// The layer's root.
    #[arg(long)]
    root: PathBuf,
    /// SOURCE_DATE_EPOCH: the time of every file and directory written.
    #[arg(long)]
    epoch: Option<i64>,
}

#[derive(Args)]
struct VerifyArgs {
    /// The checks (JSON written by the frontend).
    #[arg(long)]
    checks: PathBuf,
    /// The node's rootfs.
    #[arg(long)]
    rootfs: PathBuf,
    /// Results of the commands (`<i>.rc`, `<i>.out`, `<i>.err`).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Where to write report.json and report.txt.
    #[arg(long)]
    output_dir: Option<PathBuf>,
}

#[derive(Args)]
struct SysextArgs {
    /// The layer's root directory.
    layer: PathBuf,
    /// Extension name (`extension-release.<name>`, `<name>.raw`).
    #[arg(long)]
    name: String,
    /// The OS root whose os-release gives ID and VERSION_ID (else ID=_any).
    #[arg(long)]
    os_root: Option<PathBuf>,
    /// Where to write `<name>.raw`.
    #[arg(long)]
    output_dir: PathBuf,
}

#[derive(Args)]
struct InspectArgs {
    /// A disk image (raw, qcow2, vmdk, vhd), an image tar or a rootfs directory.
    path: PathBuf,
    /// Output format: the JSON document, or a short summary.
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    format: OutputFormat,
}

#[derive(Args)]
struct ProvenancePackagesArgs {
    /// The rootfs whose package database is read.
    #[arg(long)]
    rootfs: PathBuf,
    /// Where to write the JSON (parents are created; SOURCE_DATE_EPOCH sets their times).
    #[arg(long)]
    output: PathBuf,
}

#[derive(Args)]
struct ProvenanceSbomArgs {
    /// build.json of the provenance.
    #[arg(long)]
    build: PathBuf,
    /// packages.json (the OS layer's package database), if the result has an OS.
    #[arg(long)]
    packages: Option<PathBuf>,
    /// components.json (sha256 of the local components), if there are any.
    #[arg(long)]
    components: Option<PathBuf>,
    /// Leave out the Kubernetes components (the result is the OS layer alone).
    #[arg(long)]
    without_kubernetes: bool,
    /// Leave out the base image and OS packages (the result is the Kubernetes layer alone).
    #[arg(long)]
    without_os: bool,
    /// Where to write the SPDX JSON (parents are created).
    #[arg(long)]
    output: PathBuf,
}

#[derive(Args)]
struct CheckArgs {
    /// The spec to check (`-` reads standard input).
    spec: PathBuf,
    /// Output format: rendered diagnostics on stderr, or a JSON report on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// A value for `${KEY}` in the spec; `KEY` alone takes it from the environment (as
    /// `docker buildx build --build-arg` does). Repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check(&args),
        Command::Convert(args) => return convert_cmd::run(args),
        Command::Inspect(args) => inspect(&args),
        Command::ProvenancePackages(args) => provenance_packages(&args),
        Command::ProvenanceSbom(args) => provenance_sbom(&args),
        Command::InlineContents(args) => inline_contents(&args),
        Command::InlineApply(args) => {
            crate::inline_apply::apply(&args.from, &args.root, args.epoch).map(|n| {
                println!("{n} inline contents written");
                ExitCode::SUCCESS
            })
        }
        Command::Sysext(args) => sysext(&args),
        Command::ImagePrepare(args) => image_prepare(&args),
        Command::Verify(args) => verify(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", nodestamp_converters::error::chain(e.as_ref()));
            ExitCode::from(2)
        }
    }
}

fn build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for arg in raw {
        match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                vars.insert(k.to_owned(), v.to_owned());
            }
            Some(_) => bail!("invalid --build-arg {arg:?}: expected KEY=VALUE"),
            None => {
                if let Ok(v) = std::env::var(arg) {
                    vars.insert(arg.clone(), v);
                }
            }
        }
    }
    Ok(vars)
}

fn check(args: &CheckArgs) -> Result<ExitCode> {
    let vars = build_args(&args.build_args)?;
    let (name, bytes) = if args.spec.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the spec from standard input")?;
        ("<stdin>".to_owned(), buf)
    } else {
        let bytes = std::fs::read(&args.spec)
            .with_context(|| format!("reading {}", args.spec.display()))?;
        (args.spec.display().to_string(), bytes)
    };
    let source = String::from_utf8_lossy(&bytes);
    let mut definition_bytes = None;
    let (diags, valid) = match nodestamp_spec::load(&name, &bytes, &vars) {
        Ok(loaded) => {
            let (size, err) = nodestamp_compile::size::check_offline(&loaded.spec, &bytes);
            definition_bytes = Some(size);
            let mut all = loaded.warnings;
            let valid = err.is_none();
            all.extend(err);
            (nodestamp_spec::Diagnostics(all), valid)
        }
        Err(diags) => (diags, false),
    };
    let warnings = diags.warnings().count();
    match args.format {
        OutputFormat::Json => {
            let report = serde_json::json!({
                "file": name,
                "valid": valid,
                "errors": diags.errors().count(),
                "warnings": warnings,
                "definition_bytes": definition_bytes,
                "diagnostics": diags.to_json(),
            });
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &report).context("writing the report")?;
            writeln!(out).context("writing the report")?;
        }
        OutputFormat::Text => {
            let mut err = std::io::stderr().lock();
            for d in &diags.0 {
                writeln!(err, "{}", d.render(&source)).context("writing diagnostics")?;
            }
            if valid {
                println!(
                    "ok: {name} is a valid nodestamp spec ({})",
                    plural(warnings, "warning")
                );
            } else {
                writeln!(err, "{name}: {}", diags.summary()).context("writing diagnostics")?;
            }
        }
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn inspect(args: &InspectArgs) -> Result<ExitCode> {
    let work = inspect::WorkDir::new()?;
    let found = match inspect::inspect(&args.path, &work.0) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {}", nodestamp_converters::error::chain(e.as_ref()));
            return Ok(ExitCode::from(1));
        }
    };
    match args.format {
        OutputFormat::Json => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &found.to_json(&args.path))?;
            writeln!(out)?;
        }
        OutputFormat::Text => print!("{}", found.to_text()),
    }
    Ok(ExitCode::SUCCESS)
}

fn inline_contents(args: &InlineContentsArgs) -> Result<ExitCode> {
    use nodestamp_compile::inline;
    let layer = inline::Layer::parse(&args.layer)
        .with_context(|| format!("--layer {:?}: expected os or kubernetes", args.layer))?;
    let vars = build_args(&args.build_args)?;
    let bytes =
        std::fs::read(&args.spec).with_context(|| format!("reading {}", args.spec.display()))?;
    let loaded = match nodestamp_spec::load(&args.name, &bytes, &vars) {
        Ok(l) => l,
        Err(diags) => bail!(
            "{} does not load here as it did in the frontend:\n{diags}",
            args.name
        ),
    };
    let blobs = inline::blobs(&loaded.spec, layer);
    let found = inline::digest(&blobs);
    if found != args.sha256 {
        bail!(
            "the {} layer's inline contents read here (sha256 {found}) are not those the \
             frontend compiled (sha256 {}): the tools image's nodestamp reads {} differently; \
             use a tools image of the same version as the frontend (NODESTAMP_TOOLS_IMAGE)",
            layer.as_str(),
            args.sha256,
            args.name
        );
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    for b in &blobs {
        let path = args.output.join(&b.name);
        std::fs::write(&path, b.contents).with_context(|| format!("writing {}", path.display()))?;
    }
    let plan = inline::Plan {
        files: blobs.iter().map(|b| b.entry.clone()).collect(),
    };
    let path = args.output.join(inline::PLAN_FILE);
    std::fs::write(&path, serde_json::to_vec(&plan)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "{} inline contents of the {} layer, {} bytes",
        blobs.len(),
        layer.as_str(),
        inline::total(&blobs)
    );
    Ok(ExitCode::SUCCESS)
}

fn provenance_packages(args: &ProvenancePackagesArgs) -> Result<ExitCode> {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok());
    crate::provenance::write_packages(&args.rootfs, &args.output, epoch)?;
    Ok(ExitCode::SUCCESS)
}

fn provenance_sbom(args: &ProvenanceSbomArgs) -> Result<ExitCode> {
    let epoch: Option<i64> = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok());
    let scope = nodestamp_compile::sbom::Scope {
        os: !args.without_os,
        kubernetes: !args.without_kubernetes,
    };
    crate::provenance::write_sbom(
        &crate::provenance::SbomInputs {
            build: &args.build,
            packages: args.packages.as_deref(),
            components: args.components.as_deref(),
        },
        scope,
        epoch,
        &args.output,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn sysext(args: &SysextArgs) -> Result<ExitCode> {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(nodestamp_converters::plan::DEFAULT_EPOCH);
    match nodestamp_converters::sysext::build(
        &args.layer,
        args.os_root.as_deref(),
        &args.name,
        &args.output_dir,
        epoch,
    ) {
        Ok(path) => {
            println!("sysext\t{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {}", nodestamp_converters::error::chain(e.as_ref()));
            Ok(ExitCode::from(1))
        }
    }
}

fn image_prepare(a: &ImagePrepareArgs) -> Result<ExitCode> {
    use nodestamp_converters::images;
    let what = format!("image {} ({})", a.reference, a.name);
    if !a.archive.is_file() {
        // The build context gave nothing at that path (a source with an include pattern that
        // matches nothing is an empty directory, not an error).
        eprintln!(
            "error: {what}: {} is not in the build context (a path relative to the context's root, to an image archive file)",
            a.name
        );
        return Ok(ExitCode::from(1));
    }
    match images::prepare(
        &a.archive,
        &a.reference,
        a.sha256.as_deref(),
        &a.root,
        a.epoch,
    ) {
        Ok(p) => {
            let platforms: Vec<String> = p
                .archive
                .manifests
                .iter()
                .map(|m| format!("{} {}", m.platform, m.digest))
                .collect();
            println!(
                "{what}: {} ({}), {} bytes → /{}/{}.tar",
                p.archive.digest,
                platforms.join(", "),
                p.size,
                images::NODE_DIR,
                p.stem
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {what}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    use crate::checks;
    let list = checks::load(&args.checks)?;
    let outcomes = checks::run(&list, &args.rootfs, args.results.as_deref());
    let text = checks::report_text(&outcomes);
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut json = serde_json::to_vec_pretty(&checks::report_json(&outcomes))?;
        json.push(b'\n');
        std::fs::write(dir.join("report.json"), json).context("writing report.json")?;
        std::fs::write(dir.join("report.txt"), &text).context("writing report.txt")?;
    }
    let failed = outcomes.iter().any(|o| o.failure.is_some());
    if failed {
        eprint!("{text}");
        Ok(ExitCode::from(1))
    } else {
        print!("{text}");
        Ok(ExitCode::SUCCESS)
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frontend's converter step, parsed by this CLI's own flags: every field arrives.
    #[test]
    fn the_frontends_convert_request_parses_into_the_same_conversion() {
        let spec = "version: 1\nname: n1\nos: { from: debian:bookworm }\ndisk:\n  size: 4GiB\n  firmware: bios\n  formats: [qcow2, ova]\n";
        let loaded = nodestamp_spec::load("node.yaml", spec.as_bytes(), &BTreeMap::new())
            .expect("the spec loads");
        let formats = loaded.spec.disk.as_ref().unwrap().formats.clone();
        let request = nodestamp_compile::disk::convert_request(&loaded.spec, &formats);
        let cli = Cli::try_parse_from(request.argv()).expect("the CLI accepts the request");
        let Command::Convert(args) = cli.command else {
            panic!("not a convert command");
        };
        assert_eq!(args.formats, ["qcow2", "ova"]);
        assert_eq!(args.output_dir, Some(PathBuf::from(&request.output_dir)));
        assert_eq!(args.name.as_deref(), Some("n1"));
        let size = nodestamp_contract::units::parse_size(args.size.as_deref().unwrap()).unwrap();
        assert_eq!(size, 4 << 30);
        assert_eq!(args.firmware, "bios");
        assert_eq!(args.input, PathBuf::from(&request.rootfs));
        assert!(args.quiet);
    }
}
