//! Where nodestamp keeps its facts in a node's root filesystem. Relative to the root, as tar
//! members name them; the frontend writes `/` + the path, `nodestamp inspect` and the converters
//! read them from rootfs trees, tar streams and images.

/// The build provenance: spec, options, base image, component digests (`build.json`).
pub const BUILD_JSON: &str = "usr/lib/nodestamp/build.json";
/// The OS layer's package database as JSON (`packages` of the assembled document).
pub const PACKAGES_JSON: &str = "usr/lib/nodestamp/packages.json";
/// `{"<component>": "<sha256>"}` of the local components, as the build context gave them.
pub const COMPONENTS_JSON: &str = "usr/lib/nodestamp/components.json";
/// The provenance files: `build.json`, and beside it (optional) the packages and components,
/// which `nodestamp inspect` assembles into one document.
pub const PROVENANCE_FILES: [&str; 3] = [BUILD_JSON, PACKAGES_JSON, COMPONENTS_JSON];

/// `path` as an absolute path in the node (`/usr/lib/nodestamp/build.json`).
pub fn in_node(path: &str) -> String {
    format!("/{path}")
}
