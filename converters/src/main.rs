//! `nodestamp`: the host command line.
//!
//! - `nodestamp check [--format text|json] <spec> [--build-arg K=V …]`: validate a spec offline.
//!
//! Exit codes: 0 valid (warnings allowed), 1 the spec has errors, 2 the command could not run
//! (bad arguments, unreadable file).

mod convert_cmd;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nodestamp_frontend::spec;

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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
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
    let (diags, valid) = match spec::load(&name, &bytes, &vars) {
        Ok(loaded) => (spec::Diagnostics(loaded.warnings), true),
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

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
