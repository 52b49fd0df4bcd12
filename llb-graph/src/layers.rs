//! The layers an image exporter writes for a state, bottom first, each named by the op that
//! made it: what an image config's `history` must list so that `docker history` shows the step
//! names instead of BuildKit's own descriptions (`mount / from exec /bin/sh -c …`).
//!
//! BuildKit's layer chain of a result follows the ops: an image source brings the image's
//! layers, any other source is one layer, an exec adds one layer on top of the mount each output
//! comes from (the root filesystem, or a mounted state or scratch), a file op one layer on top
//! of its base, and a merge is its inputs' chains one after the other (scratch inputs drop out).

use crate::pb;
use crate::state::{OpKind, Output, State};

/// Where a layer of a state comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Every layer of an image source (`docker-image://…` or `oci-layout://…`): the image's
    /// own config knows how many and what made them.
    Image { identifier: String },
    /// One layer made by an op, with its progress name (empty when it has none).
    Op { name: String },
}

impl State {
    /// The layers of this state, bottom first. Equal image sources are listed once each time
    /// they occur, as BuildKit's merge keeps every input's chain.
    pub fn layers(&self) -> Vec<Layer> {
        let mut out = Vec::new();
        if let Some(o) = &self.output {
            walk(o, &mut out);
        }
        out
    }
}

fn op_layer(o: &Output) -> Layer {
    Layer::Op {
        name: o.node.meta.name.clone().unwrap_or_default(),
    }
}

fn walk(o: &Output, out: &mut Vec<Layer>) {
    match &o.node.kind {
        OpKind::Source(pb::SourceOp { identifier, .. })
            if identifier.starts_with("docker-image://")
                || identifier.starts_with("oci-layout://") =>
        {
            out.push(Layer::Image {
                identifier: identifier.clone(),
            });
        }
        OpKind::Source(_) => out.push(op_layer(o)),
        OpKind::Exec(spec) => {
            // Outputs are numbered over the writable bind mounts, in mount order.
            let source = spec
                .mounts
                .iter()
                .filter_map(|m| match &m.kind {
                    crate::exec::MountKind::Bind {
                        source,
                        readonly: false,
                        output: true,
                    } => Some(source),
                    _ => None,
                })
                .nth(usize::try_from(o.index).unwrap_or(usize::MAX));
            if let Some(Some(base)) = source {
                walk(base, out);
            }
            out.push(op_layer(o));
        }
        OpKind::File(spec) => {
            if let Some(base) = &spec.base {
                walk(base, out);
            }
            out.push(op_layer(o));
        }
        OpKind::Merge(inputs) => {
            for i in inputs {
                walk(i, out);
            }
        }
        OpKind::Diff(lower, upper) => {
            let mut below = Vec::new();
            if let Some(l) = lower {
                walk(l, &mut below);
            }
            let mut above = Vec::new();
            if let Some(u) = upper {
                walk(u, &mut above);
            }
            // A diff of a state against one of its own bases keeps the layers in between;
            // any other diff is one new layer.
            match above.strip_prefix(below.as_slice()) {
                Some(rest) => out.extend_from_slice(rest),
                None => out.push(op_layer(o)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChownOpt, CopyOpts, Exec, FileActions, Meta, Mount};

    fn op(name: &str) -> Layer {
        Layer::Op { name: name.into() }
    }

    #[test]
    fn layers_follow_execs_files_and_merges() {
        let base = State::image("debian:bookworm");
        let os = base
            .run(
                Exec::shell("apt-get install jq"),
                Meta::named("[os 1/2] jq"),
            )
            .root()
            .file(
                FileActions::new().mkfile("/etc/a", 0o644, b"a".to_vec(), ChownOpt::default()),
                Meta::named("[os 2/2] files"),
            );
        let comp = State::scratch().file(
            FileActions::new().copy(
                &State::local("context", Default::default(), Meta::named("ctx")),
                "/k",
                "/k",
                CopyOpts::default(),
            ),
            Meta::named("[kubernetes 1/2] component k"),
        );
        let conf = State::scratch().file(
            FileActions::new().mkfile("/etc/k", 0o644, b"k".to_vec(), ChownOpt::default()),
            Meta::named("[kubernetes 2/2] config"),
        );
        let k8s = State::merge(&[comp, State::scratch(), conf], Meta::named("merge k"));
        let facts = State::image("tools")
            .run(
                Exec::new(["facts"])
                    .mount(Mount::readonly(&os, "/rootfs"))
                    .mount(Mount::scratch("/out")),
                Meta::named("[provenance] facts"),
            )
            .output("/out")
            .unwrap();
        let node = State::merge(&[os, k8s], Meta::named("merge"))
            .run(Exec::shell("finalize"), Meta::named("[node] finalize"))
            .root();
        let node = State::merge(&[node, facts], Meta::named("merge facts"));
        assert_eq!(
            node.layers(),
            vec![
                Layer::Image {
                    identifier: "docker-image://docker.io/library/debian:bookworm".into()
                },
                op("[os 1/2] jq"),
                op("[os 2/2] files"),
                op("[kubernetes 1/2] component k"),
                op("[kubernetes 2/2] config"),
                op("[node] finalize"),
                op("[provenance] facts"),
            ]
        );
        assert!(State::scratch().layers().is_empty());
    }

    #[test]
    fn a_diff_against_its_own_base_keeps_the_layers_between() {
        let base = State::image("debian");
        let top = base
            .run(Exec::shell("a"), Meta::named("a"))
            .root()
            .run(Exec::shell("b"), Meta::named("b"))
            .root();
        assert_eq!(
            State::diff(&base, &top, Meta::named("d")).layers(),
            vec![op("a"), op("b")]
        );
        let other = State::image("alpine");
        assert_eq!(
            State::diff(&other, &top, Meta::named("d")).layers(),
            vec![op("d")]
        );
    }
}
