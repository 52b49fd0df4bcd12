//! The OS layer: the base image, then packages (boot-critical tier first, so adding a userland
//! package never reinstalls the kernel), users and groups, files, units, and `run` steps.

use llb_graph::{
    CacheSharing, ChownOpt, CopyOpts, Exec, FileActions, HttpOpts, ImageOpts, LocalOpts, Mount,
    Owner, State,
};

use super::reproducible::{Command, os_shell};
use super::script::{quote, words};
use super::{Ctx, DEFAULT_PATH, Steps};
use nodestamp_spec::{self as spec, Contents, Span, Spanned, Spec};

/// Packages that make the node boot (kernel, init, bootloader, initramfs, firmware). They go
/// in their own cached step: the expensive one (the kernel's postinst builds the initramfs).
pub fn is_boot_package(name: &str) -> bool {
    let n = name.split(['=', ':']).next().unwrap_or(name);
    const PREFIXES: &[&str] = &[
        "linux-image",
        "linux-headers",
        "linux-modules",
        "linux-firmware",
        "kernel",
        "systemd",
        "udev",
        "dbus",
        "grub",
        "shim",
        "initramfs-tools",
        "dracut",
        "firmware-",
        "intel-microcode",
        "amd64-microcode",
    ];
    n == "init" || PREFIXES.iter().any(|p| n.starts_with(p))
}

/// A shell script installing `packages` with whichever package manager the image has.
fn install_script(packages: &[&str]) -> String {
    let p = words(packages.iter().copied());
    format!(
        "set -eu\n\
         if command -v apt-get >/dev/null 2>&1; then\n\
         \x20 export DEBIAN_FRONTEND=noninteractive INITRD=No\n\
         \x20 apt-get update -qq\n\
         \x20 apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-unsafe-io -o Dpkg::Options::=--force-confold {p}\n\
         \x20 # INITRD=No keeps the kernel's postinst from building an initramfs that the\n\
         \x20 # initramfs-tools trigger then builds again: build it once, for kernels without one.\n\
         \x20 if command -v update-initramfs >/dev/null 2>&1; then\n\
         \x20   for k in /boot/vmlinuz-*; do\n\
         \x20     [ -e \"$k\" ] || continue; v=${{k#/boot/vmlinuz-}}\n\
         \x20     [ -e \"/boot/initrd.img-$v\" ] || update-initramfs -c -k \"$v\"\n\
         \x20   done\n\
         \x20 fi\n\
         elif command -v dnf >/dev/null 2>&1; then\n\
         \x20 dnf install -y --setopt=install_weak_deps=False {p}\n\
         elif command -v zypper >/dev/null 2>&1; then\n\
         \x20 zypper --non-interactive install --no-recommends {p}\n\
         elif command -v apk >/dev/null 2>&1; then\n\
         \x20 apk add --no-cache {p}\n\
         else\n\
         \x20 echo 'nodestamp: os.from has no supported package manager (apt-get, dnf, zypper, apk)' >&2; exit 1\n\
         fi\n"
    )
}

fn users_script(passwd: &spec::Passwd) -> String {
    let mut s = String::from("set -eu\n");
    for g in &passwd.groups {
        let gid = g.gid.map(|id| format!("-g {id} ")).unwrap_or_default();
        s += &format!(
            "getent group {n} >/dev/null || groupadd {gid}{n}\n",
            n = quote(&g.name)
        );
    }
    for u in &passwd.users {
        let n = quote(&u.name);
        let mut opts = String::new();
        if let Some(uid) = u.uid {
            opts += &format!(" -u {uid}");
        }
        if let Some(shell) = &u.shell {
            opts += &format!(" -s {}", quote(shell));
        }
        if !u.groups.is_empty() {
            opts += &format!(" -G {}", quote(&u.groups.join(",")));
        }
        // A group named like the user (declared in passwd.groups or by a package) becomes its
        // primary group; otherwise useradd creates one.
        s += &format!(
            "if id -u {n} >/dev/null 2>&1; then usermod{append}{opts} {n}\n\
             elif getent group {n} >/dev/null; then useradd -m -g {n}{opts} {n}\n\
             else useradd -m -U{opts} {n}; fi\n",
            append = if u.groups.is_empty() { "" } else { " -a" }
        );
        if let Some(hash) = &u.password_hash {
            s += &format!("usermod -p {} {n}\n", quote(hash));
        }
        if !u.ssh_authorized_keys.is_empty() {
            s += &format!(
                "home=$(getent passwd {n} | cut -d: -f6); grp=$(id -gn {n})\n\
                 install -d -m 0700 -o {n} -g \"$grp\" \"$home/.ssh\"\n\
                 printf '%s\\n' {keys} > \"$home/.ssh/authorized_keys\"\n\
                 chown {n}:\"$grp\" \"$home/.ssh/authorized_keys\"; chmod 0600 \"$home/.ssh/authorized_keys\"\n",
                keys = words(u.ssh_authorized_keys.iter().map(String::as_str))
            );
        }
    }
    s
}

pub(crate) fn owner(user: &Option<spec::Owner>, group: &Option<spec::Owner>) -> ChownOpt {
    let conv = |o: &Option<spec::Owner>| {
        o.as_ref().map(|o| match o {
            spec::Owner::Name(n) => Owner::Name(n.clone()),
            spec::Owner::Id(id) => Owner::Id(*id),
        })
    };
    ChownOpt {
        user: conv(user),
        group: conv(group),
    }
}

fn parent(path: &str) -> Option<&str> {
    let p = path.trim_end_matches('/');
    match p.rfind('/') {
        Some(0) | None => None,
        Some(i) => Some(&p[..i]),
    }
}

/// A link to create: `path` → `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ln {
    pub(crate) path: String,
    pub(crate) target: String,
    pub(crate) hard: bool,
}

/// File actions for a layer's `storage` (directories, files, extra generated files; links when
/// the engine has symlink file actions), returning the links left for a `run` step. With
/// `skip_inline`, inline files are left out: a step writes them from the spec file in the
/// engine (see [`super::inline`]).
pub(crate) fn storage_actions(
    ctx: &Ctx,
    storage: &spec::Storage,
    mut fa: FileActions,
    extra_files: &[(&str, u32, Vec<u8>)],
    extra_links: Vec<Ln>,
    skip_inline: bool,
) -> (FileActions, Vec<Ln>) {
    let mut made: Vec<String> = Vec::new();
    for d in &storage.directories {
        fa = fa.mkdir(
            &d.path,
            d.mode.unwrap_or(0o755),
            true,
            owner(&d.user, &d.group),
        );
        made.push(d.path.clone());
    }
    let mut mkparents = |fa: FileActions, path: &str| -> FileActions {
        match parent(path) {
            Some(p) if !made.iter().any(|m| m == p) => {
                made.push(p.to_string());
                fa.mkdir(p, 0o755, true, ChownOpt::default())
            }
            _ => fa,
        }
    };
    for (path, mode, data) in extra_files {
        fa = mkparents(fa, path);
        fa = fa.mkfile(*path, *mode, data.clone(), ChownOpt::default());
    }
    for f in &storage.files {
        if skip_inline && matches!(f.contents, Contents::Inline(_)) {
            continue;
        }
        fa = mkparents(fa, &f.path);
        let mode = f.mode.unwrap_or(0o644);
        let own = owner(&f.user, &f.group);
        fa = match &f.contents {
            // BuildKit's mkfile writes into an existing file (keeping its mode) and through a
            // symlink: remove whatever the base has at the path first, as Butane replaces it.
            Contents::Inline(text) => {
                fa.rm(&f.path, true)
                    .mkfile(&f.path, mode, text.as_bytes().to_vec(), own)
            }
            Contents::Local(rel) => {
                let src = local(ctx, f.context.as_ref(), rel, f.span);
                let opts = CopyOpts {
                    owner: own,
                    mode: Some(mode),
                    create_dest_path: true,
                    // A symlink in the context is resolved inside the context: one pointing
                    // out of it fails the build instead of becoming a link in the image.
                    follow_symlinks: true,
                    ..Default::default()
                };
                fa.copy(&src, format!("/{rel}"), &f.path, opts)
            }
            Contents::Source { url, sha256 } => {
                let src = http(
                    ctx,
                    &format!("file {}", f.path),
                    url,
                    sha256,
                    "file",
                    f.span,
                );
                let opts = CopyOpts {
                    owner: own,
                    mode: Some(mode),
                    create_dest_path: true,
                    ..Default::default()
                };
                fa.copy(&src, "/file", &f.path, opts)
            }
        };
    }
    let mut leftover = Vec::new();
    let links = storage.links.iter().map(|l| Ln {
        path: l.path.clone(),
        target: l.target.clone(),
        hard: l.hard,
    });
    for l in links.chain(extra_links) {
        if ctx.opts.symlink_file_action && !l.hard {
            fa = mkparents(fa, &l.path);
            fa = fa.symlink(&l.target, &l.path, ChownOpt::default());
        } else {
            leftover.push(l);
        }
    }
    (fa, leftover)
}

/// One file or directory of the build context, or of the named build context `context`
/// (`--build-context NAME=…`: a directory, or an image whose filesystem holds `rel`). When it
/// is a symbolic link, the client sends its target too (inside the context: a link out of it
/// is still not found), so the copy that follows the link finds it.
pub(crate) fn local(ctx: &Ctx, context: Option<&Spanned<String>>, rel: &str, span: Span) -> State {
    if let Some(name) = context {
        // The build checked that every named context was given (build::finish).
        if let Some(src) = ctx.opts.contexts.get(&name.value) {
            let what = if src.is_image() {
                format!("[context {}] {}", name.value, rel)
            } else {
                format!("[context {}] load {rel}", name.value)
            };
            return src.state(
                &name.value,
                &[rel.to_string()],
                &ctx.opts.platform,
                ctx.opts.image_resolve_mode,
                ctx.meta(what, Some(span)),
            );
        }
    }
    let opts = LocalOpts {
        session_id: ctx.opts.session_id.clone(),
        include_patterns: vec![rel.to_string()],
        follow_paths: vec![rel.to_string()],
        shared_key_hint: Some(format!("{}:{rel}", ctx.opts.context_name)),
        ..Default::default()
    };
    State::local(
        &ctx.opts.context_name,
        opts,
        ctx.meta(format!("context: {rel}"), Some(span)),
    )
}

/// A download verified by its sha256, saved as `/<filename>`; `what` names it in progress
/// output and errors (`component kubelet`).
pub(crate) fn http(
    ctx: &Ctx,
    what: &str,
    url: &str,
    sha256: &str,
    filename: &str,
    span: Span,
) -> State {
    let opts = HttpOpts {
        checksum: Some(format!("sha256:{sha256}")),
        filename: Some(filename.into()),
        perm: None,
    };
    let name = format!("download {what}: {url}");
    State::http(url, opts, ctx.meta(name, Some(span)))
}

/// Files and directories whose mode has setuid, setgid or sticky bits. BuildKit's file actions
/// keep only the permission bits (0777), so these get an explicit `chmod` step.
pub(crate) fn special_modes(storage: &spec::Storage) -> Vec<(String, u32)> {
    let files = storage.files.iter().map(|f| (&f.path, f.mode));
    let dirs = storage.directories.iter().map(|d| (&d.path, d.mode));
    files
        .chain(dirs)
        .filter_map(|(p, m)| m.filter(|m| m & 0o7000 != 0).map(|m| (p.clone(), m)))
        .collect()
}

/// `chmod` lines giving `modes` to their paths (relative to `root`).
pub(crate) fn chmod_script(modes: &[(String, u32)], root: &str) -> String {
    modes
        .iter()
        .map(|(p, m)| format!("chmod {m:04o} {}\n", quote(&format!("{root}{p}"))))
        .collect()
}

/// A shell script making the links `links` (relative to `root`). With `epoch`
/// (`SOURCE_DATE_EPOCH`) every link and every directory on the way to it get that time, as the
/// file actions' entries do, so the layer is the same byte for byte whenever it is built; when
/// `root` is a mounted layer (not `/`), every entry of the layer is reset, which also undoes the
/// parent directories' mtime changes made by adding entries to them.
pub(crate) fn links_script(links: &[Ln], root: &str, epoch: Option<i64>) -> String {
    let mut s = String::from("set -eu\n");
    let mut touched: Vec<String> = Vec::new();
    for l in links {
        let path = format!("{root}{}", l.path);
        let target = if l.hard {
            format!("{root}{}", l.target)
        } else {
            l.target.clone()
        };
        let dir = parent(&l.path)
            .map(|p| format!("{root}{p}"))
            .unwrap_or_else(|| format!("{root}/"));
        s += &format!(
            "mkdir -p {} && ln -f{} {} {}\n",
            quote(&dir),
            if l.hard { "" } else { "sn" },
            quote(&target),
            quote(&path)
        );
        let mut p = l.path.as_str();
        touched.push(path.clone());
        while let Some(d) = parent(p) {
            touched.push(format!("{root}{d}"));
            p = d;
        }
    }
    if let Some(epoch) = epoch {
        if root.is_empty() {
            if touched.is_empty() {
                return s;
            }
            touched.sort();
            touched.dedup();
            s += &format!(
                "touch -h -d @{epoch} -- {}\n",
                words(touched.iter().map(String::as_str))
            );
        } else {
            s += &format!(
                "find {} -exec touch -h -d @{epoch} -- {{}} +\n",
                quote(root)
            );
        }
    }
    s
}

/// Whether `storage` can be written on scratch and laid onto the OS: every owner numeric (or
/// root), since names resolve against the OS's `/etc/passwd`, and no hard link, since its
/// target is in the OS.
fn on_scratch(storage: &spec::Storage) -> bool {
    let numeric = |o: &Option<spec::Owner>| match o {
        Some(spec::Owner::Name(n)) => n == "root",
        _ => true,
    };
    storage
        .files
        .iter()
        .all(|f| numeric(&f.user) && numeric(&f.group))
        && storage
            .directories
            .iter()
            .all(|d| numeric(&d.user) && numeric(&d.group))
        && storage.links.iter().all(|l| !l.hard)
}

/// With `SOURCE_DATE_EPOCH`: `layer` (file actions on scratch) finished by the tools image —
/// copied onto scratch with `links` made and `modes` set, every entry at that time, as for the
/// Kubernetes layer — and laid onto `os`. The file actions cannot do it in place: they leave
/// the current time on the directories they add entries to, and a later step's change to a
/// directory's time is not part of its layer.
fn epoch_layer(
    ctx: &Ctx,
    os: &State,
    layer: &State,
    links: &[Ln],
    modes: &[(String, u32)],
    meta: &llb_graph::Meta,
) -> State {
    let script = format!(
        "set -eu\ncp -a /in/. /layer/\n{}{}",
        links_script(links, "/layer", ctx.opts.source_date_epoch),
        chmod_script(modes, "/layer")
    );
    let named = |what: &str| llb_graph::Meta {
        name: meta.name.as_ref().map(|n| format!("{n}: {what}")),
        ..meta.clone()
    };
    let settle = named("SOURCE_DATE_EPOCH");
    let exec = super::script::shell(ctx, &settle, script)
        .mount(Mount::readonly(layer, "/in"))
        .mount(Mount::scratch("/layer"))
        .network(llb_graph::NetMode::None)
        .readonly_root();
    let fixed = ctx
        .tools_image("os")
        .run(exec, settle)
        .output("/layer")
        .unwrap_or_else(|| layer.clone());
    State::merge(&[os.clone(), fixed], named("onto the OS"))
}

/// Where [`copied_in_place`] mounts the files it copies into the OS: in runc's `/dev` tmpfs, as
/// [`super::script::SCRIPT_DIR`], so the mount point leaves no trace in the layer.
pub const STORAGE_DIR: &str = "/dev/nodestamp-storage";

/// A `storage` that cannot be written on scratch ([`on_scratch`]: an owner by name, a hard
/// link), when `SOURCE_DATE_EPOCH` is set or a hard link's target is one of its own files: its
/// files are written on scratch by file actions without owners (`meta`, located at the copies
/// as the file actions in place are), then one step in the OS ([`os_shell`]) copies them in and
/// does what the file actions in place do: missing directories made with their mode and owner
/// (existing ones left as they are), files replaced, owners set (names resolve in the OS; a
/// user without a group gets that user's primary group), links made, special modes set. Why
/// one step: file actions in place leave the current time on the directories they add entries
/// to, and a later step cannot change that in their layer (with `SOURCE_DATE_EPOCH`, this
/// step's changes all get that time); and a hard link made a step after its target would be a
/// copy, since a layer cannot hold a hard link to a file of another layer. With `skip_inline`,
/// the inline files are already in `os` (written by [`super::inline`]).
fn copied_in_place(
    ctx: &Ctx,
    os: State,
    storage: &spec::Storage,
    extra_files: &[(&str, u32, Vec<u8>)],
    skip_inline: bool,
    meta: llb_graph::Meta,
) -> State {
    let copied = |f: &&spec::File| !(skip_inline && matches!(f.contents, Contents::Inline(_)));
    let bare = spec::Storage {
        files: storage
            .files
            .iter()
            .filter(copied)
            .map(|f| spec::File {
                user: None,
                group: None,
                ..f.clone()
            })
            .collect(),
        ..spec::Storage::default()
    };
    let script = in_place_script(storage, extra_files, skip_inline, STORAGE_DIR);
    let onto = llb_graph::Meta {
        name: meta.name.as_ref().map(|n| format!("{n}: onto the OS")),
        ..meta.clone()
    };
    let mut exec =
        os_shell(ctx, &onto, Command::Generated(script)).network(llb_graph::NetMode::None);
    if !bare.files.is_empty() || !extra_files.is_empty() {
        let fa = FileActions::new().timestamp(ctx.opts.source_date_epoch);
        let (fa, _) = storage_actions(ctx, &bare, fa, extra_files, Vec::new(), false);
        let files = State::scratch().file(fa, at_copies(ctx, meta, storage));
        exec = exec.mount(Mount::readonly(&files, STORAGE_DIR));
    }
    os.run(exec, onto).root()
}

/// The `chown` argument for `user` and `group` as BuildKit's file actions resolve them: a user
/// without a group gets the user's primary group (by name) or the same id; a group without a
/// user, root as the user. `None` when neither is given.
fn chown_arg(user: &Option<spec::Owner>, group: &Option<spec::Owner>) -> Option<String> {
    let one = |o: &spec::Owner| match o {
        spec::Owner::Name(n) => quote(n),
        spec::Owner::Id(id) => id.to_string(),
    };
    match (user, group) {
        (None, None) => None,
        (Some(u), Some(g)) => Some(format!("{}:{}", one(u), one(g))),
        (Some(u @ spec::Owner::Name(_)), None) => Some(format!("{u}:\"$(id -g {u})\"", u = one(u))),
        (Some(u @ spec::Owner::Id(_)), None) => Some(format!("{u}:{u}", u = one(u))),
        (None, Some(g)) => Some(format!("0:{}", one(g))),
    }
}

/// The script of [`copied_in_place`], copying files from `src` (their paths under it).
fn in_place_script(
    storage: &spec::Storage,
    extra_files: &[(&str, u32, Vec<u8>)],
    skip_inline: bool,
    src: &str,
) -> String {
    // `mkdirs MODE OWNER PATH`: PATH and its missing parents, each with MODE and OWNER, as
    // BuildKit's mkdir with parents makes them; nothing when PATH exists.
    let mut s = String::from(
        "set -eu\n\
         umask 022\n\
         mkdirs() {\n\
         \x20 { [ -z \"$3\" ] || [ -d \"$3\" ]; } && return 0\n\
         \x20 mkdirs \"$1\" \"$2\" \"${3%/*}\"\n\
         \x20 mkdir -m \"$1\" -- \"$3\"\n\
         \x20 if [ -n \"$2\" ]; then chown -- \"$2\" \"$3\"; fi\n\
         }\n",
    );
    for d in &storage.directories {
        let own = chown_arg(&d.user, &d.group).unwrap_or_else(|| "''".into());
        s += &format!(
            "mkdirs {:04o} {own} {}\n",
            d.mode.unwrap_or(0o755) & 0o777,
            quote(d.path.trim_end_matches('/'))
        );
    }
    let extra = extra_files.iter().map(|(p, m, _)| (*p, *m, None));
    let files = storage
        .files
        .iter()
        .filter(|f| !(skip_inline && matches!(f.contents, Contents::Inline(_))))
        .map(|f| {
            (
                f.path.as_str(),
                f.mode.unwrap_or(0o644),
                chown_arg(&f.user, &f.group),
            )
        });
    for (path, mode, own) in extra.chain(files) {
        let q = quote(path);
        if let Some(p) = parent(path) {
            s += &format!("mkdirs 0755 '' {}\n", quote(p));
        }
        s += &format!(
            "rm -rf -- {q}\ncp -RP -- {} {q}\nchmod {:04o} {q}\n",
            quote(&format!("{src}{path}")),
            mode & 0o777
        );
        if let Some(own) = own {
            s += &format!("chown -R -- {own} {q}\n");
        }
    }
    let links: Vec<Ln> = storage
        .links
        .iter()
        .map(|l| Ln {
            path: l.path.clone(),
            target: l.target.clone(),
            hard: l.hard,
        })
        .collect();
    if !links.is_empty() {
        s += links_script(&links, "", None).trim_start_matches("set -eu\n");
    }
    s + &chmod_script(&special_modes(storage), "")
}

/// `meta` located also at every file of `storage` copied from the build context or a URL: the
/// entries that can fail while the step runs (a missing file, a symlink out of the context), so
/// BuildKit shows their lines, not only the step's first entry.
pub(crate) fn at_copies(
    ctx: &Ctx,
    mut meta: llb_graph::Meta,
    storage: &spec::Storage,
) -> llb_graph::Meta {
    let first = meta.locations.first().map(|(_, r)| *r);
    for f in &storage.files {
        if matches!(f.contents, Contents::Local(_) | Contents::Source { .. }) {
            let r = super::range(f.span);
            if Some(r) != first {
                meta = meta.at(&ctx.source, r);
            }
        }
    }
    meta
}

/// One numbered step of the OS layer (`[os i/n] name`).
struct Step<'a> {
    name: String,
    span: Option<Span>,
    apply: Apply<'a>,
}

/// Adds a step's ops on top of a state.
type Apply<'a> = Box<dyn FnOnce(&Ctx, State, llb_graph::Meta) -> State + 'a>;

fn join_names(items: &[&Spanned<String>]) -> String {
    let names: Vec<&str> = items.iter().map(|p| p.value.as_str()).collect();
    let mut s = names.join(" ");
    if s.len() > 60 {
        s.truncate(57);
        s += "...";
    }
    s
}

fn span_of(items: &[&Spanned<String>]) -> Option<Span> {
    let first = items.first()?.span;
    let last = items.last()?.span;
    Some(Span {
        start: first.start,
        end: last.end,
    })
}

pub(crate) fn compile<'a>(ctx: &Ctx, spec: &'a Spec) -> State {
    let os = &spec.os;
    let from = &os.from;
    let image_opts = ImageOpts {
        resolve_mode: ctx.opts.image_resolve_mode,
        platform: Some(ctx.opts.platform.clone()),
    };
    let mut base = match &ctx.opts.base_context {
        None => State::image_with(
            &from.value,
            image_opts,
            ctx.meta(
                Steps::unnumbered("os", &format!("from {}", from.value)),
                Some(from.span),
            ),
        ),
        Some(src) => src.state(
            &crate::contexts::familiar_name(&from.value),
            &[],
            &ctx.opts.platform,
            ctx.opts.image_resolve_mode,
            ctx.meta(
                Steps::unnumbered("os", &format!("from {} (build context)", from.value)),
                Some(from.span),
            ),
        ),
    };
    let mut has_path = false;
    for (k, v) in &ctx.opts.base_env {
        has_path |= k == "PATH";
        base = base.env(k.clone(), v.clone());
    }
    if !has_path {
        base = base.env("PATH", DEFAULT_PATH);
    }

    // `os.build`: files bind-mounted and secrets given to the package and `run` steps.
    let build = build_mounts(ctx, &os.build);
    let build_secrets: Vec<spec::Secret> = os.build.secrets.clone();

    let mut steps: Vec<Step<'a>> = Vec::new();
    let cache_key: String = from
        .value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let (boot, user): (Vec<&Spanned<String>>, Vec<&Spanned<String>>) =
        os.packages.iter().partition(|p| is_boot_package(&p.value));
    for (tier, pkgs) in [("boot packages", boot), ("packages", user)] {
        if pkgs.is_empty() {
            continue;
        }
        let names: Vec<&str> = pkgs.iter().map(|p| p.value.as_str()).collect();
        let script = install_script(&names);
        let key = cache_key.clone();
        let (build, build_secrets) = (build.clone(), build_secrets.clone());
        steps.push(Step {
            name: format!("install {tier}: {}", join_names(&pkgs)),
            span: span_of(&pkgs),
            apply: Box::new(move |ctx, st, meta| {
                let mut exec = os_shell(ctx, &meta, Command::Generated(script))
                    .mount(Mount::cache(
                        "/var/lib/apt/lists",
                        format!("nodestamp-apt-lists-{key}"),
                        CacheSharing::Locked,
                    ))
                    .mount(Mount::cache(
                        "/var/cache/apt",
                        format!("nodestamp-apt-cache-{key}"),
                        CacheSharing::Locked,
                    ));
                exec = with_proxy(ctx, with_build(exec, &build, &build_secrets));
                st.run(exec, meta).root()
            }),
        });
    }

    if !os.passwd.users.is_empty() || !os.passwd.groups.is_empty() {
        let script = users_script(&os.passwd);
        let span = os.passwd.groups.first().map(|g| g.span).or(os
            .passwd
            .users
            .first()
            .map(|u| u.span));
        let list = |v: Vec<&str>| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(" ")
            }
        };
        let groups = list(os.passwd.groups.iter().map(|g| g.name.as_str()).collect());
        let users = list(os.passwd.users.iter().map(|u| u.name.as_str()).collect());
        steps.push(Step {
            name: format!("groups: {groups}; users: {users}"),
            span,
            apply: Box::new(move |ctx, st, meta| {
                let exec = os_shell(ctx, &meta, Command::Generated(script));
                st.run(exec, meta).root()
            }),
        });
    }

    let cmdline = (!os.kernel_arguments.is_empty()).then(|| {
        let args: Vec<&str> = os
            .kernel_arguments
            .iter()
            .map(|a| a.value.as_str())
            .collect();
        format!("{}\n", args.join(" ")).into_bytes()
    });
    // Large inline contents come from the spec file in the engine, not the definition.
    let inline = super::inline::extract(ctx, spec, super::inline::Layer::Os);
    let storage = &os.storage;
    if cmdline.is_some()
        || !storage.files.is_empty()
        || !storage.directories.is_empty()
        || !storage.links.is_empty()
    {
        let span = storage
            .directories
            .first()
            .map(|d| d.span)
            .or(storage.files.first().map(|f| f.span))
            .or(storage.links.first().map(|l| l.span))
            .or(os.kernel_arguments.first().map(|a| a.span));
        let n = storage.files.len()
            + storage.directories.len()
            + storage.links.len()
            + usize::from(cmdline.is_some());
        steps.push(Step {
            name: format!("files ({n})"),
            span,
            apply: Box::new(move |ctx, st, meta| {
                let extra: Vec<(&str, u32, Vec<u8>)> = cmdline
                    .into_iter()
                    .map(|c| ("/etc/kernel/cmdline", 0o644, c))
                    .collect();
                let epoch = ctx.opts.source_date_epoch;
                let fa = FileActions::new().timestamp(epoch);
                let (fa, links) =
                    storage_actions(ctx, storage, fa, &extra, Vec::new(), inline.is_some());
                let modes = special_modes(storage);
                let inline_meta = llb_graph::Meta {
                    name: meta.name.as_ref().map(|n| format!("{n}: inline contents")),
                    ..meta.clone()
                };
                // Large inline contents: written by the tools image after the file actions.
                let with_inline = |st: State| match &inline {
                    None => st,
                    Some(extracted) => super::inline::apply(
                        ctx,
                        &st,
                        extracted,
                        inline_meta.clone(),
                        super::inline::Layer::Os,
                    ),
                };
                if epoch.is_some() && on_scratch(storage) {
                    let layer = State::scratch().file(fa, at_copies(ctx, meta.clone(), storage));
                    let layer = with_inline(layer);
                    return epoch_layer(ctx, &st, &layer, &links, &modes, &meta);
                }
                // A layer cannot hold a hard link to a file of another layer: a hard link to a
                // file of this section is one only when both are made in the same step.
                let linked_within = storage
                    .links
                    .iter()
                    .any(|l| l.hard && storage.files.iter().any(|f| f.path == l.target));
                if epoch.is_some() || linked_within {
                    // Large inline contents first: the step then leaves them alone but for
                    // their special modes and the links to them.
                    let st = with_inline(st);
                    return copied_in_place(ctx, st, storage, &extra, inline.is_some(), meta);
                }
                let links_meta = llb_graph::Meta {
                    name: meta.name.as_ref().map(|n| format!("{n}: links and modes")),
                    ..meta.clone()
                };
                let st = with_inline(st.file(fa, at_copies(ctx, meta, storage)));
                if links.is_empty() && modes.is_empty() {
                    st
                } else {
                    let script = links_script(&links, "", epoch) + &chmod_script(&modes, "");
                    let exec = os_shell(ctx, &links_meta, Command::Generated(script))
                        .network(llb_graph::NetMode::None);
                    st.run(exec, links_meta).root()
                }
            }),
        });
    }

    let units = &os.systemd.units;
    if units
        .iter()
        .any(|u| u.contents.is_some() || !u.dropins.is_empty())
    {
        let span = units.first().map(|u| u.span);
        steps.push(Step {
            name: "systemd units".into(),
            span,
            apply: Box::new(move |ctx, st, meta| {
                let fa = unit_files(ctx, &spec.os.systemd, "/etc/systemd/system");
                if ctx.opts.source_date_epoch.is_some() {
                    let layer = State::scratch().file(fa, meta.clone());
                    return epoch_layer(ctx, &st, &layer, &[], &[], &meta);
                }
                st.file(fa, meta)
            }),
        });
    }
    let enable: Vec<&str> = units
        .iter()
        .filter(|u| u.enabled == Some(true) && !u.mask)
        .map(|u| u.name.as_str())
        .collect();
    let disable: Vec<&str> = units
        .iter()
        .filter(|u| u.enabled == Some(false) && !u.mask)
        .map(|u| u.name.as_str())
        .collect();
    let mask: Vec<&str> = units
        .iter()
        .filter(|u| u.mask)
        .map(|u| u.name.as_str())
        .collect();
    if !enable.is_empty() || !disable.is_empty() || !mask.is_empty() {
        let mut script = String::from(
            "set -eu\ncommand -v systemctl >/dev/null 2>&1 || { echo 'nodestamp: os.systemd.units needs systemctl in the image: add systemd to os.packages' >&2; exit 1; }\n",
        );
        for (verb, list) in [("enable", &enable), ("disable", &disable), ("mask", &mask)] {
            if !list.is_empty() {
                script += &format!("systemctl {verb} {}\n", words(list.iter().copied()));
            }
        }
        let what: Vec<String> = [("enable", &enable), ("disable", &disable), ("mask", &mask)]
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(v, l)| format!("{v} {}", l.join(" ")))
            .collect();
        let span = units
            .iter()
            .find(|u| u.enabled.is_some() || u.mask)
            .map(|u| u.span);
        steps.push(Step {
            name: format!("systemctl {}", what.join("; ")),
            span,
            apply: Box::new(move |ctx, st, meta| {
                let exec = os_shell(ctx, &meta, Command::Generated(script));
                st.run(exec.network(llb_graph::NetMode::None), meta).root()
            }),
        });
    }

    for cmd in &os.run {
        let first = cmd.value.lines().next().unwrap_or("");
        let mut label = first.to_string();
        if label.len() > 60 || cmd.value.lines().count() > 1 {
            label = format!("{}...", label.chars().take(57).collect::<String>());
        }
        let script = cmd.value.clone();
        let build = build.clone();
        let secrets: Vec<spec::Secret> =
            build_secrets.iter().chain(&cmd.secrets).cloned().collect();
        steps.push(Step {
            name: format!("run: {label}"),
            span: Some(cmd.span),
            apply: Box::new(move |ctx, st, meta| {
                let exec = os_shell(ctx, &meta, Command::Run(script));
                st.run(with_proxy(ctx, with_build(exec, &build, &secrets)), meta)
                    .root()
            }),
        });
    }

    let mut names = Steps::new("os", steps.len());
    let mut st = base;
    for step in steps {
        let meta = ctx.meta(names.next(&step.name), step.span);
        st = (step.apply)(ctx, st, meta);
    }
    st
}

/// The mounts of `os.build.files`: one state made on scratch (not in any image layer), each
/// file bind-mounted read-only at its path. BuildKit removes the mount points it had to create
/// once the step is done, so the files leave no trace in the step's layer.
fn build_mounts(ctx: &Ctx, build: &spec::Build) -> Vec<Mount> {
    if build.files.is_empty() {
        return Vec::new();
    }
    let storage = spec::Storage {
        files: build.files.clone(),
        ..spec::Storage::default()
    };
    let fa = FileActions::new().timestamp(ctx.opts.source_date_epoch);
    let (fa, _) = storage_actions(ctx, &storage, fa, &[], Vec::new(), false);
    let paths: Vec<&str> = build.files.iter().map(|f| f.path.as_str()).collect();
    let meta = ctx.meta(
        Steps::unnumbered("os", &format!("build-time files: {}", paths.join(" "))),
        build.files.first().map(|f| f.span),
    );
    let state = State::scratch().file(fa, at_copies(ctx, meta, &storage));
    build
        .files
        .iter()
        .map(|f| Mount::readonly(&state, &f.path).selector(&f.path))
        .collect()
}

/// Adds the build-time file mounts and the secrets (files readable by root, or environment
/// variables; neither enters the cache key or any layer) to a step.
fn with_build(mut exec: Exec, mounts: &[Mount], secrets: &[spec::Secret]) -> Exec {
    for m in mounts {
        exec = exec.mount(m.clone());
    }
    for s in secrets {
        exec = match &s.target {
            spec::SecretTarget::File(path) => exec.mount(Mount::secret(path, &s.id, false)),
            spec::SecretTarget::Env(name) => exec.secret_env(name, &s.id),
        };
    }
    exec
}

/// Passes the proxy build args to a step; BuildKit keeps them out of the cache key.
pub(crate) fn with_proxy(ctx: &Ctx, exec: Exec) -> Exec {
    let get = |k: &str| {
        ctx.opts
            .proxy
            .get(k)
            .or_else(|| ctx.opts.proxy.get(&k.to_ascii_lowercase()))
            .cloned()
            .unwrap_or_default()
    };
    let (http, https, no) = (get("HTTP_PROXY"), get("HTTPS_PROXY"), get("NO_PROXY"));
    if http.is_empty() && https.is_empty() && no.is_empty() {
        exec
    } else {
        exec.proxy(&http, &https, &no)
    }
}

/// Unit files and drop-ins under `dir`.
pub(crate) fn unit_files(ctx: &Ctx, systemd: &spec::Systemd, dir: &str) -> FileActions {
    let mut fa = FileActions::new().timestamp(ctx.opts.source_date_epoch);
    fa = fa.mkdir(dir, 0o755, true, ChownOpt::default());
    for u in &systemd.units {
        if let Some(c) = &u.contents {
            fa = fa.mkfile(
                format!("{dir}/{}", u.name),
                0o644,
                c.as_bytes().to_vec(),
                ChownOpt::default(),
            );
        }
        if !u.dropins.is_empty() {
            let d = format!("{dir}/{}.d", u.name);
            fa = fa.mkdir(&d, 0o755, true, ChownOpt::default());
            for drop in &u.dropins {
                fa = fa.mkfile(
                    format!("{d}/{}", drop.name),
                    0o644,
                    drop.contents.as_bytes().to_vec(),
                    ChownOpt::default(),
                );
            }
        }
    }
    fa
}

#[cfg(test)]
mod tests {
    use super::{Ln, links_script};

    fn ln(path: &str, target: &str) -> Ln {
        Ln {
            path: path.into(),
            target: target.into(),
            hard: false,
        }
    }

    #[test]
    fn links_get_source_date_epoch() {
        let links = [ln(
            "/etc/systemd/system/multi-user.target.wants/a.service",
            "/etc/systemd/system/a.service",
        )];
        let plain = links_script(&links, "/layer", None);
        assert!(!plain.contains("touch"), "{plain}");
        // A mounted layer: every entry is reset, parents made by mkdir -p and changed by ln too.
        let fixed = links_script(&links, "/layer", Some(1_700_000_000));
        assert!(
            fixed.ends_with("find /layer -exec touch -h -d @1700000000 -- {} +\n"),
            "{fixed}"
        );
        // The root filesystem: the links and their ancestors only.
        let os = links_script(&[ln("/a/b/c", "x")], "", Some(5));
        assert!(os.ends_with("touch -h -d @5 -- /a /a/b /a/b/c\n"), "{os}");
        // The script runs: links, times.
        let dir = std::env::temp_dir().join(format!("nodestamp-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.to_str().unwrap();
        crate::script::run_ok(&links_script(&links, root, Some(1_700_000_000)));
        for p in [
            "etc",
            "etc/systemd/system/multi-user.target.wants",
            "etc/systemd/system/multi-user.target.wants/a.service",
        ] {
            let m = std::fs::symlink_metadata(dir.join(p)).unwrap();
            let secs = m
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            assert_eq!(secs, 1_700_000_000, "{p}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod epoch_tests {
    use std::collections::BTreeMap;

    use llb_graph::decode_ops;
    use llb_graph::pb::file_action::Action;
    use llb_graph::pb::op::Op as K;

    use crate::script::command_files;
    use crate::{CompileOptions, Target, compile_target};

    /// A storage written in place: a file owned by a user the spec creates, a hard link.
    const SPEC: &str = include_str!("../../../testdata/cache/in-place.yaml");

    /// The generated scripts (step name, script) of the OS target's execs, and whether any
    /// file action of the definition gives an owner by name.
    fn compiled(epoch: Option<i64>) -> (Vec<(String, String)>, bool) {
        compiled_from(SPEC, epoch)
    }

    /// [`compiled`] for the spec `text`.
    fn compiled_from(text: &str, epoch: Option<i64>) -> (Vec<(String, String)>, bool) {
        let loaded = nodestamp_spec::load("node.yaml", text.as_bytes(), &BTreeMap::new()).unwrap();
        let opts = CompileOptions {
            source_date_epoch: epoch,
            ..CompileOptions::default()
        };
        let def = compile_target(&loaded.spec, text.as_bytes(), &opts, &Target::Os)
            .marshal()
            .unwrap();
        let ops = decode_ops(&def).unwrap().ops;
        let mut scripts = Vec::new();
        let mut named_owner = false;
        for op in ops.values() {
            match &op.op {
                Some(K::Exec(e)) => {
                    let args = &e.meta.as_ref().unwrap().args;
                    if let Some((_, s)) = command_files(&ops, op)
                        .into_iter()
                        .find(|(n, _)| n == "step")
                    {
                        scripts.push((args.last().unwrap().clone(), s));
                    }
                }
                Some(K::File(f)) => {
                    for a in &f.actions {
                        let owner = match &a.action {
                            Some(Action::Mkfile(m)) => m.owner.as_ref(),
                            Some(Action::Mkdir(m)) => m.owner.as_ref(),
                            Some(Action::Copy(c)) => c.owner.as_ref(),
                            _ => None,
                        };
                        let by_name = owner
                            .and_then(|o| o.user.as_ref())
                            .and_then(|u| u.user.as_ref())
                            .is_some_and(|u| matches!(u, llb_graph::pb::user_opt::User::ByName(_)));
                        named_owner |= by_name;
                    }
                }
                _ => {}
            }
        }
        (scripts, named_owner)
    }

    /// The script of the one step that copies [`SPEC`]'s storage into the OS, after checking
    /// that it is the only files step and that no file action resolves an owner by name.
    fn onto_the_os_script(epoch: Option<i64>) -> String {
        let (scripts, named_owner) = compiled(epoch);
        assert!(!named_owner, "a file action on the OS resolves an owner");
        let files: Vec<&(String, String)> = scripts
            .iter()
            .filter(|(n, _)| n.starts_with("files"))
            .collect();
        assert_eq!(files.len(), 1, "{scripts:#?}");
        assert_eq!(files[0].0, "files (4): onto the OS");
        files[0].1.clone()
    }

    #[test]
    fn with_source_date_epoch_storage_in_place_is_one_settled_step() {
        let script = onto_the_os_script(Some(1_700_000_000));
        for line in [
            "mkdirs 0700 core:\"$(id -g core)\" /home/core/notes\n",
            "cp -RP -- /dev/nodestamp-storage/home/core/notes/todo /home/core/notes/todo\n",
            "chmod 0640 /home/core/notes/todo\n",
            "chown -R -- core:\"$(id -g core)\" /home/core/notes/todo\n",
            "chmod 0755 /usr/local/bin/hello\n",
            "ln -f /usr/local/bin/hello /usr/local/bin/hi\n",
        ] {
            assert!(script.contains(line), "{line:?} not in:\n{script}");
        }
        // The settling wrapper gives the times: the script sets none itself.
        assert!(!script.contains("touch"), "{script}");
    }

    /// Without `SOURCE_DATE_EPOCH`, owners by name stay file actions in place, links and modes a
    /// step after them.
    #[test]
    fn without_source_date_epoch_storage_in_place_stays_file_actions() {
        let link =
            "      - { path: /usr/local/bin/hi, target: /usr/local/bin/hello, hard: true }\n";
        assert!(SPEC.contains(link));
        let symlink = SPEC.replace(link, "      - { path: /usr/local/bin/hi, target: hello }\n");
        let (scripts, named_owner) = compiled_from(&symlink, None);
        assert!(named_owner);
        let names: Vec<&str> = scripts.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"files (4): links and modes"), "{names:?}");
        assert!(
            !names.iter().any(|n| n.ends_with("onto the OS")),
            "{names:?}"
        );
    }

    /// A hard link to a file of its own section is made in the step that copies that file in,
    /// also without `SOURCE_DATE_EPOCH` (else the layer would hold a copy); no owner is resolved
    /// by a file action then either.
    #[test]
    fn without_source_date_epoch_a_hard_link_to_its_sections_file_is_made_with_it() {
        let script = onto_the_os_script(None);
        assert!(
            script.contains("ln -f /usr/local/bin/hello /usr/local/bin/hi\n"),
            "{script}"
        );
    }

    /// The script's `mkdirs` makes missing directories only, each with the mode given.
    #[test]
    fn mkdirs_makes_missing_directories_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        let script = super::in_place_script(&nodestamp_spec::Storage::default(), &[], false, "/");
        crate::script::run_ok(&format!(
            "{script}chmod 0711 {root}/a\nmkdirs 0700 '' {root}/a/b/c\nmkdirs 0755 '' {root}/a\n"
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("a"), 0o711);
        assert_eq!(mode("a/b"), 0o700);
        assert_eq!(mode("a/b/c"), 0o700);
    }
}
