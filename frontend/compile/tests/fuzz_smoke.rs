//! A stable-toolchain smoke fuzzer: bounded, seeded mutations of the corpus in
//! `testdata/trust/fuzz-corpus/` go through the same path as the cargo-fuzz target `parse_compile`
//! (`fuzz/`): load, render every diagnostic, and for specs that load, compile and marshal every
//! target. Asserts no panic and that each input finishes quickly.
//!
//! `NODESTAMP_FUZZ_ITERATIONS` (default 3000), `NODESTAMP_FUZZ_SECONDS` (time cap, default 60)
//! and `NODESTAMP_FUZZ_SEED` change the run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nodestamp_compile::{CompileOptions, compile};
use nodestamp_spec as spec;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens that matter to the spec grammar and to YAML.
const TOKENS: &[&str] = &[
    "\n",
    " ",
    "  ",
    "\t",
    ":",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "<<: ",
    "---\n",
    "\"",
    "'",
    "|\n",
    ">\n",
    "#",
    "!!str ",
    "~",
    "null",
    "0644",
    "644",
    "07777",
    "-1",
    "8GiB",
    "8 GB",
    "${X}",
    "${X:-d}",
    "$$",
    "..",
    "/",
    "../",
    "/etc/a",
    "kubelet.service",
    "sha256-",
    "true",
    "yes",
    "\u{feff}",
    "\u{0}",
    "é",
    "version: 1\n",
    "os:\n",
    "kubernetes:\n",
    "build:\n",
    "secrets: [{ id: a }]",
    "command: x",
    "overwrite: true",
    "extract: true",
    "mask: true",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..at, t.iter().copied());
            }
            2 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            3 if !out.is_empty() => {
                // Duplicate a slice (repeated keys, longer lists).
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(64)).min(out.len());
                let piece: Vec<u8> = out[start..end].to_vec();
                out.splice(at..at, piece);
            }
            4 => {
                // Splice in a piece of another corpus file.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(200)).min(other.len());
                    out.splice(at..at, other[start..end].iter().copied());
                }
            }
            5 => {
                // Change indentation of a line.
                if let Some(nl) = out[..at.min(out.len())].iter().rposition(|&b| b == b'\n') {
                    out.insert(nl + 1, b' ');
                }
            }
            _ => out.truncate(at),
        }
    }
    out
}

fn run_one(bytes: &[u8]) {
    let vars = BTreeMap::from([("X".to_string(), "1".to_string())]);
    match spec::load("fuzz.yaml", bytes, &vars) {
        Ok(l) => {
            let text = String::from_utf8_lossy(bytes);
            for w in &l.warnings {
                let _ = w.render(&text);
            }
            for epoch in [None, Some(0)] {
                let opts = CompileOptions {
                    source_date_epoch: epoch,
                    ..CompileOptions::default()
                };
                let c = compile(&l.spec, bytes, &opts);
                for st in [&c.os, &c.kubernetes, &c.node] {
                    st.marshal().expect("a loaded spec marshals");
                }
            }
        }
        Err(d) => {
            let _ = d.render(&String::from_utf8_lossy(bytes));
            let _ = d.to_json();
        }
    }
}

#[test]
fn seeded_mutations_of_the_corpus_never_panic_or_hang() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/trust/fuzz-corpus");
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    corpus.sort();
    assert!(corpus.len() >= 5, "corpus at {}", dir.display());
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let iterations = env("NODESTAMP_FUZZ_ITERATIONS", 3000);
    let mut rng = Rng(env("NODESTAMP_FUZZ_SEED", 0x6e6f_6465_7374_616d) | 1);
    let cap = Duration::from_secs(env("NODESTAMP_FUZZ_SECONDS", 60));
    let started = Instant::now();
    for seed in &corpus {
        run_one(seed);
    }
    for i in 0..iterations {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &corpus);
        let t = Instant::now();
        let r = std::panic::catch_unwind(|| run_one(&input));
        if r.is_err() {
            let path = std::env::temp_dir().join(format!("nodestamp-fuzz-crash-{i}.yaml"));
            let _ = std::fs::write(&path, &input);
            panic!("iteration {i} panicked; input saved to {}", path.display());
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "iteration {i} took {:?}",
            t.elapsed()
        );
        if started.elapsed() > cap {
            eprintln!("time cap reached after {i} iterations");
            break;
        }
    }
    eprintln!("fuzz smoke: clean for {:?}", started.elapsed());
}
