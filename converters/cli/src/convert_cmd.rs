//! `nodestamp convert`: rootfs (directory, tar file or `-` for a tar stream) → disk images.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use nodestamp_converters::progress::{Console, Progress, Quiet};
use nodestamp_converters::rootfs::{Input, TarMode};
use nodestamp_converters::tools::SystemRunner;
use nodestamp_converters::{ConvertOptions, Format, OutputSpec, Provenance, convert, plan};

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The node's rootfs: a directory, a tar file, or `-` for a tar stream on stdin
    /// (`docker buildx build --target node -o type=tar,dest=- . | nodestamp convert … -`).
    pub input: PathBuf,
    /// Output format: raw, qcow2, vmdk (streamOptimized), vhd (fixed), ova (vSphere) or gce
    /// (Compute Engine's disk.raw in a .tar.gz). Repeatable; with
    /// `-o` and no `--format`, taken from the output's extension.
    #[arg(long = "format", short = 'f', value_name = "FORMAT")]
    pub formats: Vec<String>,
    /// Output file (one format).
    #[arg(short = 'o', long, conflicts_with = "output_dir")]
    pub output: Option<PathBuf>,
    /// Output directory: writes `<name>.<format>` for each format.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Image name (file names, boot entry); defaults to the output's file stem, or `node`.
    #[arg(long)]
    pub name: Option<String>,
    /// Seed for the disk's UUIDs (defaults to the name): same seed, same UUIDs.
    #[arg(long)]
    pub seed: Option<String>,
    /// Disk size: bytes or a binary unit (8GiB, 512MiB), as disk.size in the spec; defaults to the content plus headroom.
    #[arg(long)]
    pub size: Option<String>,
    /// Kernel arguments; defaults to the rootfs's /etc/kernel/cmdline.
    #[arg(long, allow_hyphen_values = true)]
    pub kernel_arguments: Option<String>,
    /// How the disk boots: uefi (systemd-boot), bios (GRUB i386-pc from the node's grub-pc-bin)
    /// or hybrid (both on one disk). bios and hybrid need a rootfs directory.
    #[arg(long, default_value = "uefi", value_name = "uefi|bios|hybrid")]
    pub firmware: String,
    /// Size of the EFI system partition.
    #[arg(long, default_value = "256MiB")]
    pub esp_size: String,
    /// How a tar input reaches mke2fs (auto: stream when mke2fs reads tarballs, else sparse as
    /// root, else extract).
    #[arg(long, value_enum, default_value_t = TarModeArg::Auto)]
    pub tar_mode: TarModeArg,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum TarModeArg {
    Auto,
    Stream,
    /// The tree without file contents, then the contents written into their blocks (root).
    Sparse,
    Extract,
}

fn outputs(args: &ConvertArgs, name: &str) -> Result<Vec<OutputSpec>> {
    let mut formats = Vec::new();
    for f in &args.formats {
        for part in f.split(',').filter(|p| !p.is_empty()) {
            let fmt: Format = part.parse()?;
            if !formats.contains(&fmt) {
                formats.push(fmt);
            }
        }
    }
    match (&args.output, &args.output_dir) {
        (Some(out), None) => {
            if formats.is_empty() {
                let ext = out
                    .extension()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default();
                formats.push(ext.parse().with_context(|| {
                    format!(
                        "no --format given and cannot tell it from {}",
                        out.display()
                    )
                })?);
            }
            if formats.len() > 1 {
                bail!("-o takes one format; use --output-dir for several");
            }
            Ok(vec![OutputSpec {
                format: formats[0],
                path: out.clone(),
            }])
        }
        (None, Some(dir)) => {
            if formats.is_empty() {
                formats.push(Format::Qcow2);
            }
            Ok(formats
                .into_iter()
                .map(|format| OutputSpec {
                    format,
                    path: dir.join(format!("{name}.{}", format.extension())),
                })
                .collect())
        }
        _ => bail!("give an output: -o FILE or --output-dir DIR"),
    }
}

fn default_name(args: &ConvertArgs) -> String {
    args.name.clone().unwrap_or_else(|| {
        args.output
            .as_deref()
            .and_then(Path::file_stem)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "node".into())
    })
}

fn run_inner(args: ConvertArgs) -> Result<()> {
    let name = default_name(&args);
    let outputs = outputs(&args, &name)?;
    let opts = ConvertOptions {
        name,
        seed: args.seed.clone(),
        size: args
            .size
            .as_deref()
            .map(|s| plan::parse_size("--size", s))
            .transpose()?,
        esp_size: plan::parse_size("--esp-size", &args.esp_size)?,
        kernel_arguments: args.kernel_arguments.clone(),
        epoch: None,
        outputs,
        firmware: args.firmware.parse()?,
        tar_mode: match args.tar_mode {
            TarModeArg::Auto => TarMode::Auto,
            TarModeArg::Stream => TarMode::Stream,
            TarModeArg::Sparse => TarMode::Sparse,
            TarModeArg::Extract => TarMode::Extract,
        },
    };
    let input = Input::from_arg(&args.input)?;
    let mut console;
    let mut quiet = Quiet;
    let progress: &mut dyn Progress = if args.quiet {
        &mut quiet
    } else {
        console = Console::new(std::io::stderr().is_terminal());
        &mut console
    };
    let report = convert(input, &opts, &mut SystemRunner, progress)
        .with_context(|| format!("converting {}", args.input.display()))?;
    for (o, len) in &report.outputs {
        println!("{}\t{}\t{} bytes", o.format, o.path.display(), len);
    }
    let first = report
        .outputs
        .iter()
        .find(|(o, _)| o.format == Format::Raw)
        .unwrap_or(&report.outputs[0]);
    provenance_beside(&args.input, &report.provenance, &first.0.path, &opts.name)?;
    Ok(())
}

/// Writes the rootfs's build provenance as `<name>.json` beside the disk outputs: the document
/// `nodestamp inspect` assembles (from the directory; for tar inputs from the files seen in the
/// tar, else read back from the first disk). A rootfs without one gets none.
fn provenance_beside(input: &Path, seen: &Provenance, first: &Path, name: &str) -> Result<()> {
    let source = if input.is_dir() { input } else { first };
    let document = match seen {
        Provenance::Found {
            build,
            packages,
            components,
        } if !input.is_dir() => {
            // Unreadable JSON gets no document, as when read back from the disk.
            let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).map_err(|_| ());
            let beside = |b: &Option<Vec<u8>>| b.as_deref().map(parse).transpose();
            let (Ok(build), Ok(packages), Ok(components)) =
                (parse(build), beside(packages), beside(components))
            else {
                return Ok(());
            };
            nodestamp_compile::provenance::assemble(build, packages, components)
        }
        Provenance::Absent if !input.is_dir() => return Ok(()),
        _ => {
            let work = crate::inspect::WorkDir::new()?;
            match crate::inspect::inspect(source, &work.0) {
                Ok(found) => found.build,
                Err(_) => return Ok(()),
            }
        }
    };
    let mut build = serde_json::to_vec_pretty(&document)?;
    build.push(b'\n');
    let dir = match first.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, build).with_context(|| format!("writing {}", path.display()))?;
    println!("provenance\t{}", path.display());
    Ok(())
}

/// Runs `nodestamp convert`; prints the error chain and returns 1 on failure.
pub fn run(args: ConvertArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", nodestamp_converters::error::chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}
