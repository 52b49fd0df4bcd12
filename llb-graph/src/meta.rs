use std::sync::Arc;

/// A source file that op locations point into (the spec), sent once per definition.
#[derive(Debug, PartialEq, Eq)]
pub struct SourceMap {
    pub filename: String,
    pub data: Vec<u8>,
    pub language: String,
}

impl SourceMap {
    pub fn new(filename: impl Into<String>, data: impl Into<Vec<u8>>, language: &str) -> Arc<Self> {
        Arc::new(SourceMap {
            filename: filename.into(),
            data: data.into(),
            language: language.into(),
        })
    }
}

/// A range in a [`SourceMap`]: 1-based lines, 0-based characters (BuildKit's convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceRange {
    pub start_line: u32,
    pub start_char: u32,
    pub end_line: u32,
    pub end_char: u32,
}

/// Per-op metadata: the progress name and where in the spec the op comes from. It does not
/// take part in the op digest (BuildKit keeps it beside the op, keyed by digest).
#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub name: Option<String>,
    pub locations: Vec<(Arc<SourceMap>, SourceRange)>,
    /// Run the op again instead of taking its result from the cache (`--no-cache`). Marshal
    /// marks every op using its result too, and never a source (images, local files and
    /// downloads are named by what they fetch).
    pub ignore_cache: bool,
    pub progress_group: Option<(String, String)>,
}

impl Meta {
    /// Metadata with a custom progress name (`[os 2/4] install packages`).
    pub fn named(name: impl Into<String>) -> Self {
        Meta {
            name: Some(name.into()),
            ..Meta::default()
        }
    }

    /// Adds a source location.
    pub fn at(mut self, map: &Arc<SourceMap>, range: SourceRange) -> Self {
        self.locations.push((Arc::clone(map), range));
        self
    }

    /// Groups the op's progress under a named group.
    pub fn group(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.progress_group = Some((id.into(), name.into()));
        self
    }
}
