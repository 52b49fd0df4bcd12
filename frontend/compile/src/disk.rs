//! Disk targets: the converter (`nodestamp convert`, shipped in the frontend's own image) runs
//! with the node's root filesystem mounted read-only and writes `<name>.<format>` into an empty
//! output directory, which becomes the result (`-o type=local,dest=out`).

use llb_graph::{ChownOpt, CopyOpts, Exec, FileActions, Mount, NetMode, State};

use nodestamp_contract::convert::ConvertRequest;

use super::Ctx;
use nodestamp_spec::{Format, Spec};

/// Where the rootfs and the output are mounted in the converter step.
pub const ROOTFS: &str = "/rootfs";
pub const OUT: &str = "/out";

/// The converter's request for `formats`.
pub fn convert_request(spec: &Spec, formats: &[Format]) -> ConvertRequest {
    let disk = spec.disk.clone().unwrap_or_default();
    ConvertRequest {
        formats: formats.iter().map(|f| f.as_str().to_string()).collect(),
        output_dir: OUT.into(),
        name: spec.name.clone(),
        size: disk.size,
        firmware: disk.firmware.as_str().into(),
        rootfs: ROOTFS.into(),
    }
}

pub(crate) fn compile(ctx: &Ctx, spec: &Spec, node: &State, formats: &[Format]) -> State {
    let tools = ctx.tools_image("disk");
    let mut exec = Exec::new(convert_request(spec, formats).argv())
        .network(NetMode::None)
        .mount(Mount::readonly(node, ROOTFS))
        .mount(Mount::scratch(OUT));
    if let Some(epoch) = ctx.opts.source_date_epoch {
        exec = exec.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    let files: Vec<String> = formats
        .iter()
        .map(|f| format!("{}.{}", spec.name, f.extension()))
        .collect();
    let span = spec.disk.as_ref().map(|d| d.span);
    let run = tools.run(
        exec,
        ctx.meta(
            format!("[disk] nodestamp convert → {}", files.join(" ")),
            span,
        ),
    );
    run.output(OUT).unwrap_or_else(State::scratch)
}

/// Where KubeVirt reads a containerDisk's image, and the uid/gid of its qemu process.
pub const CONTAINER_DISK_DIR: &str = "/disk";
pub const KUBEVIRT_QEMU_ID: u32 = 107;

/// KubeVirt's containerDisk: the node's qcow2 (made by [`compile`]) copied onto scratch at
/// `/disk/<name>.qcow2`, directory and file owned by 107:107, as KubeVirt requires.
pub(crate) fn container_disk(ctx: &Ctx, spec: &Spec, node: &State) -> State {
    let disk = compile(ctx, spec, node, &[Format::Qcow2]);
    let file = format!("{}.{}", spec.name, Format::Qcow2.extension());
    let owner = ChownOpt::ids(KUBEVIRT_QEMU_ID, KUBEVIRT_QEMU_ID);
    let fa = FileActions::new()
        .timestamp(ctx.opts.source_date_epoch)
        .mkdir(CONTAINER_DISK_DIR, 0o755, false, owner.clone())
        .copy(
            &disk,
            format!("/{file}"),
            format!("{CONTAINER_DISK_DIR}/{file}"),
            CopyOpts {
                owner,
                ..CopyOpts::default()
            },
        );
    let span = spec.disk.as_ref().map(|d| d.span);
    State::scratch().file(
        fa,
        ctx.meta(
            format!("[disk] containerDisk: {CONTAINER_DISK_DIR}/{file}, owner 107:107"),
            span,
        ),
    )
}
