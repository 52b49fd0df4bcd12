//! `--target sysext`: the Kubernetes layer as a systemd system extension image. The tools
//! image's `nodestamp sysext` maps the layer under `/usr` (units to `/usr/lib/systemd/system`,
//! other `/etc` files as factory defaults copied by systemd-tmpfiles), writes
//! `extension-release.<name>` with the `ID`/`VERSION_ID` of `os.from` (its os-release, read from
//! the base image mounted read-only: no package is installed for this target) and packs it as
//! erofs: `<name>.raw` (`-o type=local,dest=out`).

use llb_graph::{Exec, ImageOpts, Mount, NetMode, State};

use super::Ctx;
use nodestamp_spec::Spec;

/// The converter's command line.
pub fn sysext_args(spec: &Spec) -> Vec<String> {
    [
        "nodestamp",
        "sysext",
        "--name",
        spec.name.as_str(),
        "--os-root",
        "/os",
        "--output-dir",
        "/out",
        "/layer",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub(crate) fn compile(ctx: &Ctx, spec: &Spec, kubernetes: &State) -> State {
    let image_opts = |_: ()| ImageOpts {
        resolve_mode: ctx.opts.image_resolve_mode,
        platform: Some(ctx.opts.platform.clone()),
    };
    let tools = ctx.tools_image("sysext");
    let base = State::image_with(
        &spec.os.from.value,
        image_opts(()),
        ctx.meta(
            format!("[os] from {}", spec.os.from.value),
            Some(spec.os.from.span),
        ),
    );
    let mut exec = Exec::new(sysext_args(spec))
        .network(NetMode::None)
        .mount(Mount::readonly(kubernetes, "/layer"))
        .mount(Mount::readonly(&base, "/os"))
        .mount(Mount::scratch("/out"));
    if let Some(epoch) = ctx.opts.source_date_epoch {
        exec = exec.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    let span = spec.kubernetes.as_ref().map(|k| k.span);
    tools
        .run(
            exec,
            ctx.meta(
                format!("[sysext] nodestamp sysext → {}.raw", spec.name),
                span,
            ),
        )
        .output("/out")
        .unwrap_or_else(State::scratch)
}
