//! The Kubernetes layer, built from scratch so that it never depends on the OS layer: each
//! component is a layer of its own (bumping one leaves the others cached and byte-identical),
//! configuration and units form one more, and the symbolic links (unit enablement, masks,
//! `storage.links`) one more when the engine cannot make links with file actions — so editing a
//! configuration file re-runs nothing but that file's step.

use llb_graph::{ChownOpt, CopyOpts, Exec, FileActions, Mount, NetMode, State};

use super::os::{
    Ln, at_copies, chmod_script, http, links_script, local, special_modes, storage_actions,
    unit_files,
};
use super::script::words;
use super::units::install_targets;
use super::{Ctx, Steps};
use nodestamp_contract::images::{
    IMPORT_SCRIPT, IMPORT_SCRIPT_PATH, IMPORT_UNIT, IMPORT_UNIT_CONTENTS,
};
use nodestamp_spec::{ComponentSource, ImageEntry, Span, Spec};

const UNIT_DIR: &str = "/etc/systemd/system";
const SYSCTL_FILE: &str = "/etc/sysctl.d/90-nodestamp-kubernetes.conf";
const MODULES_FILE: &str = "/etc/modules-load.d/nodestamp-kubernetes.conf";

pub(crate) struct KubernetesLayer {
    pub(crate) state: State,
    /// Commands that need the merged root (units shipped by components rather than the spec).
    pub(crate) finalize: Option<String>,
    pub(crate) finalize_span: Option<Span>,
}

/// Where a component lands: a file path, or for archives the directory they unpack into.
pub fn component_dest(name: &str, dest: Option<&str>, extract: bool) -> String {
    match (dest, extract) {
        (Some(d), true) if !d.ends_with('/') => format!("{d}/"),
        (Some(d), false) if d.ends_with('/') => format!("{d}{name}"),
        (Some(d), _) => d.to_string(),
        (None, true) => "/usr/local/".into(),
        (None, false) => format!("/usr/local/bin/{name}"),
    }
}

pub(crate) fn compile(ctx: &Ctx, spec: &Spec) -> KubernetesLayer {
    let Some(k) = &spec.kubernetes else {
        return KubernetesLayer {
            state: State::scratch(),
            finalize: None,
            finalize_span: None,
        };
    };

    // Links `systemctl enable`/`mask` would make, for units whose [Install] section we know.
    let mut unit_links = Vec::new();
    let mut enable_late = Vec::new();
    let mut disable_late = Vec::new();
    let mut late_span = None;
    for u in &k.systemd.units {
        let own = format!("{UNIT_DIR}/{}", u.name);
        if u.mask {
            unit_links.push(Ln {
                path: own.clone(),
                target: "/dev/null".into(),
                hard: false,
            });
            continue;
        }
        match (u.enabled, u.contents.as_deref()) {
            (Some(true), Some(c)) if !install_targets(c).is_empty() => {
                for (kind, target) in install_targets(c) {
                    let path = if kind == "alias" {
                        format!("{UNIT_DIR}/{target}")
                    } else {
                        format!("{UNIT_DIR}/{target}.{kind}/{}", u.name)
                    };
                    unit_links.push(Ln {
                        path,
                        target: own.clone(),
                        hard: false,
                    });
                }
            }
            (Some(true), _) => {
                enable_late.push(u.name.as_str());
                late_span.get_or_insert(u.span);
            }
            (Some(false), None) => {
                disable_late.push(u.name.as_str());
                late_span.get_or_insert(u.span);
            }
            _ => {}
        }
    }

    if !k.images.is_empty() {
        unit_links.push(Ln {
            path: format!("{UNIT_DIR}/multi-user.target.wants/{IMPORT_UNIT}"),
            target: format!("{UNIT_DIR}/{IMPORT_UNIT}"),
            hard: false,
        });
    }
    let has_config = !k.images.is_empty()
        || !k.storage.files.is_empty()
        || !k.storage.directories.is_empty()
        || !k.storage.links.is_empty()
        || !k.systemd.units.is_empty()
        || !k.sysctl.is_empty()
        || !k.modules.is_empty();
    let mut extra: Vec<(&str, u32, Vec<u8>)> = Vec::new();
    if !k.sysctl.is_empty() {
        let text: String = k
            .sysctl
            .iter()
            .map(|(key, v)| format!("{} = {}\n", key.value, v.value))
            .collect();
        extra.push((SYSCTL_FILE, 0o644, text.into_bytes()));
    }
    if !k.modules.is_empty() {
        let text: String = k.modules.iter().map(|m| format!("{}\n", m.value)).collect();
        extra.push((MODULES_FILE, 0o644, text.into_bytes()));
    }
    // Preloaded images: the first-boot import and its unit (the archives are layers of their own).
    let import_unit = format!("{UNIT_DIR}/{IMPORT_UNIT}");
    if !k.images.is_empty() {
        extra.push((IMPORT_SCRIPT_PATH, 0o755, IMPORT_SCRIPT.as_bytes().to_vec()));
        extra.push((
            &import_unit,
            0o644,
            IMPORT_UNIT_CONTENTS.as_bytes().to_vec(),
        ));
    }
    // Large inline contents come from the spec file in the engine, not the definition.
    let inline = super::inline::extract(ctx, spec, super::inline::Layer::Kubernetes);
    let (config_fa, leftover) = if has_config {
        let mut fa = FileActions::new().timestamp(ctx.opts.source_date_epoch);
        if !k.systemd.units.is_empty() {
            fa = unit_files(ctx, &k.systemd, UNIT_DIR);
        }
        storage_actions(ctx, &k.storage, fa, &extra, unit_links, inline.is_some())
    } else {
        (FileActions::new(), Vec::new())
    };

    // Links the file actions could not make: symbolic ones need nothing from the configuration
    // and get a layer of their own; hard ones point into it and are made on it.
    let (hard, soft): (Vec<Ln>, Vec<Ln>) = leftover.into_iter().partition(|l| l.hard);
    let modes = special_modes(&k.storage);
    let tools_step = has_config
        && (!hard.is_empty() || !modes.is_empty() || ctx.opts.source_date_epoch.is_some());
    let links_step = has_config && !soft.is_empty();
    let total = k.components.len()
        + k.images.len()
        + usize::from(has_config)
        + usize::from(tools_step)
        + usize::from(links_step);
    let mut names = Steps::new("kubernetes", total);
    let mut name = |what: String| names.next(&what);

    let mut layers = Vec::new();
    for c in &k.components {
        let (src, src_path) = match &c.source {
            ComponentSource::Http { url, sha256 } => (
                http(
                    ctx,
                    &format!("component {}", c.name),
                    url,
                    sha256,
                    &c.name,
                    c.span,
                ),
                format!("/{}", c.name),
            ),
            ComponentSource::Local(rel) => (
                local(ctx, c.context.as_ref(), rel, c.span),
                format!("/{rel}"),
            ),
        };
        let dest = component_dest(&c.name, c.dest.as_deref(), c.extract);
        let opts = CopyOpts {
            unpack: c.extract,
            mode: if c.extract {
                None
            } else {
                Some(c.mode.unwrap_or(0o755))
            },
            create_dest_path: true,
            // Resolved inside the build context: a symlink out of it fails the build.
            follow_symlinks: matches!(c.source, ComponentSource::Local(_)),
            owner: ChownOpt::ids(0, 0),
            ..Default::default()
        };
        let fa = FileActions::new()
            .timestamp(ctx.opts.source_date_epoch)
            .copy(&src, src_path, &dest, opts);
        let verb = if c.extract { "unpack" } else { "install" };
        let layer = State::scratch().file(
            fa,
            ctx.meta(name(format!("{verb} {} → {dest}", c.name)), Some(c.span)),
        );
        layers.push(match ctx.opts.source_date_epoch {
            None => layer,
            Some(_) => tools_layer(
                ctx,
                &layer,
                &[],
                &[],
                ctx.meta(
                    Steps::unnumbered("kubernetes", &format!("SOURCE_DATE_EPOCH: {}", c.name)),
                    Some(c.span),
                ),
            ),
        });
    }

    for img in &k.images {
        layers.push(image_layer(
            ctx,
            img,
            ctx.meta(
                name(format!("image {} ← {}", img.reference, img.archive)),
                Some(img.span),
            ),
        ));
    }

    if has_config {
        let span = k
            .storage
            .files
            .first()
            .map(|f| f.span)
            .or(k.systemd.units.first().map(|u| u.span))
            .or(k.sysctl.first().map(|(key, _)| key.span))
            .or(k.modules.first().map(|m| m.span))
            .or(k.images.first().map(|i| i.span));
        let meta = ctx.meta(name("configuration and units".into()), span);
        let inline_meta = llb_graph::Meta {
            name: meta.name.as_ref().map(|n| format!("{n}: inline contents")),
            ..meta.clone()
        };
        let mut config = State::scratch().file(config_fa, at_copies(ctx, meta, &k.storage));
        if let Some(extracted) = &inline {
            config = super::inline::apply(
                ctx,
                &config,
                extracted,
                inline_meta,
                super::inline::Layer::Kubernetes,
            );
        }
        if tools_step {
            // Engines without symlink file actions: the frontend's own tools image writes the
            // links; with SOURCE_DATE_EPOCH it also fixes every entry's time. The OS is not
            // involved.
            let what: Vec<&str> = hard.iter().map(|l| l.path.as_str()).collect();
            let moded: Vec<&str> = modes.iter().map(|(p, _)| p.as_str()).collect();
            let label = match (what.is_empty(), moded.is_empty()) {
                (true, true) => "SOURCE_DATE_EPOCH: configuration".to_string(),
                (false, true) => format!("links: {}", what.join(" ")),
                (true, false) => format!("modes: {}", moded.join(" ")),
                (false, false) => format!("links: {}; modes: {}", what.join(" "), moded.join(" ")),
            };
            config = tools_layer(ctx, &config, &hard, &modes, ctx.meta(name(label), span));
        }
        layers.push(config);
        if links_step {
            let what: Vec<&str> = soft.iter().map(|l| l.path.as_str()).collect();
            let meta = ctx.meta(name(format!("links: {}", what.join(" "))), span);
            layers.push(links_layer(ctx, &soft, meta));
        }
    }

    let state = State::merge(
        &layers,
        ctx.meta(
            Steps::unnumbered("kubernetes", "merge components and configuration"),
            Some(k.span),
        ),
    );
    let finalize = (!enable_late.is_empty() || !disable_late.is_empty()).then(|| {
        let mut s = String::from(
            "set -eu\ncommand -v systemctl >/dev/null 2>&1 || { echo 'nodestamp: kubernetes.systemd.units without contents are enabled with systemctl: add systemd to os.packages' >&2; exit 1; }\n",
        );
        if !enable_late.is_empty() {
            s += &format!("systemctl enable {}\n", words(enable_late.iter().copied()));
        }
        if !disable_late.is_empty() {
            s += &format!("systemctl disable {}\n", words(disable_late.iter().copied()));
        }
        s
    });
    KubernetesLayer {
        state,
        finalize,
        finalize_span: late_span,
    }
}

/// One preloaded image: the tools image checks the archive (its sha256 when the spec gives one,
/// every blob's digest, the image's manifests) with only that archive mounted, and writes it
/// into `/var/lib/nodestamp/images/` named by the reference, with its record and import line.
/// The layer depends on the archive, the reference and the tools image: never on the OS or on
/// another image.
fn image_layer(ctx: &Ctx, img: &ImageEntry, meta: llb_graph::Meta) -> State {
    let mut args: Vec<String> = vec![
        "nodestamp".into(),
        "image-prepare".into(),
        "--ref".into(),
        img.reference.clone(),
        "--archive".into(),
        format!("/in/{}", img.archive),
        "--name".into(),
        img.archive.clone(),
        "--root".into(),
        "/out".into(),
    ];
    if let Some(sum) = &img.sha256 {
        args.extend(["--sha256".into(), sum.clone()]);
    }
    if let Some(epoch) = ctx.opts.source_date_epoch {
        args.extend(["--epoch".into(), epoch.to_string()]);
    }
    let exec = Exec::new(args)
        .network(NetMode::None)
        .readonly_root()
        .mount(Mount::readonly(
            &local(ctx, None, &img.archive, img.span),
            "/in",
        ))
        .mount(Mount::scratch("/out"));
    ctx.tools_image("kubernetes")
        .run(exec, meta)
        .output("/out")
        .unwrap_or_else(State::scratch)
}

/// A layer of symbolic links made by the tools image on scratch (with `SOURCE_DATE_EPOCH`, every
/// entry at that time): it depends on nothing but the links themselves.
fn links_layer(ctx: &Ctx, links: &[Ln], meta: llb_graph::Meta) -> State {
    let script = links_script(links, "/layer", ctx.opts.source_date_epoch);
    let exec = super::script::shell(ctx, &meta, script)
        .mount(Mount::scratch("/layer"))
        .network(NetMode::None)
        .readonly_root();
    ctx.tools_image("kubernetes")
        .run(exec, meta)
        .output("/layer")
        .unwrap_or_else(State::scratch)
}

/// A layer finished by the tools image: `links` made, and with `SOURCE_DATE_EPOCH` every entry
/// set to that time. Adding an entry to a directory changes the directory's time, and the file
/// actions' `create_dest_path` and parent directories take the current time, so with an epoch
/// the layer is copied onto scratch (`/in` → `/layer`) and normalized there: one layer, the
/// same bytes on every build. Without an epoch the links are written into the layer itself.
fn tools_layer(
    ctx: &Ctx,
    layer: &State,
    links: &[Ln],
    modes: &[(String, u32)],
    meta: llb_graph::Meta,
) -> State {
    let tools = ctx.tools_image("kubernetes");
    let epoch = ctx.opts.source_date_epoch;
    let script = links_script(links, "/layer", epoch) + &chmod_script(modes, "/layer");
    let exec = match epoch {
        Some(_) => super::script::shell(
            ctx,
            &meta,
            format!("set -eu\ncp -a /in/. /layer/\n{script}"),
        )
        .mount(Mount::readonly(layer, "/in"))
        .mount(Mount::scratch("/layer")),
        None => super::script::shell(ctx, &meta, script).mount(Mount::layer(layer, "/layer")),
    }
    .network(NetMode::None)
    .readonly_root();
    tools
        .run(exec, meta)
        .output("/layer")
        .unwrap_or_else(|| layer.clone())
}

#[cfg(test)]
mod tests {
    use super::component_dest;

    #[test]
    fn component_destinations() {
        assert_eq!(
            component_dest("kubelet", None, false),
            "/usr/local/bin/kubelet"
        );
        assert_eq!(component_dest("cni", None, true), "/usr/local/");
        assert_eq!(
            component_dest("cni", Some("/opt/cni/bin"), true),
            "/opt/cni/bin/"
        );
        assert_eq!(
            component_dest("kubectl", Some("/usr/bin/"), false),
            "/usr/bin/kubectl"
        );
        assert_eq!(
            component_dest("kubectl", Some("/usr/bin/kc"), false),
            "/usr/bin/kc"
        );
    }
}
