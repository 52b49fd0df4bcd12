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

/// Above this size a source file is sent with only the lines its locations point at (and a
/// few around them): the definition must fit in one gRPC message, and a spec of many
/// megabytes would fill it with lines no error shows.
pub const FULL_SOURCE_MAX: usize = 64 * 1024;

/// Lines kept before and after each location, and at most this many from its start and end.
const CONTEXT: u32 = 5;
const RANGE_HEAD: u32 = 20;

/// `data` with every line not near one of `ranges` (1-based `(start, end)` lines) emptied:
/// line numbers stay right, and BuildKit still prints the lines around an error. Data up to
/// [`FULL_SOURCE_MAX`] bytes is kept whole.
pub fn trim_source(data: &[u8], ranges: &[(u32, u32)]) -> Vec<u8> {
    if data.len() <= FULL_SOURCE_MAX {
        return data.to_vec();
    }
    let mut keep: Vec<(u32, u32)> = Vec::new();
    for &(start, end) in ranges {
        let end = end.max(start);
        keep.push((
            start.saturating_sub(CONTEXT),
            end.min(start + RANGE_HEAD) + CONTEXT,
        ));
        keep.push((end.saturating_sub(CONTEXT), end + CONTEXT));
    }
    let mut out = Vec::with_capacity(data.len().min(1 << 20));
    for (i, line) in data.split_inclusive(|b| *b == b'\n').enumerate() {
        let n = i as u32 + 1;
        if keep.iter().any(|(a, b)| (*a..=*b).contains(&n)) {
            out.extend_from_slice(line);
        } else if line.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

/// A range in a [`SourceMap`]: 1-based lines, 0-based characters (BuildKit's convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceRange {
    pub start_line: u32,
    pub start_char: u32,
    pub end_line: u32,
    pub end_char: u32,
}

impl SourceRange {
    /// A whole line.
    pub fn line(line: u32) -> Self {
        SourceRange {
            start_line: line,
            start_char: 0,
            end_line: line,
            end_char: 0,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sources_are_kept_whole() {
        let data = b"a\nb\nc\n";
        assert_eq!(trim_source(data, &[]), data);
    }

    #[test]
    fn large_sources_keep_the_lines_near_locations() {
        let line = format!("{}\n", "x".repeat(99));
        let data = line.repeat(2000).into_bytes();
        let out = trim_source(&data, &[(100, 100), (1000, 1500)]);
        let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').collect();
        // Same number of lines, so locations still point at the right ones.
        assert_eq!(lines.len(), 2001);
        let kept: Vec<usize> = (0..2000).filter(|i| !lines[*i].is_empty()).collect();
        let want: Vec<usize> = (94..105).chain(994..1025).chain(1494..1505).collect();
        assert_eq!(kept, want);
        assert!(out.len() < 10_000, "{}", out.len());
    }
}
