//! Load, then compile and marshal every target of what loads (with and without
//! SOURCE_DATE_EPOCH); never a panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use nodestamp_compile::{CompileOptions, compile};

fuzz_target!(|data: &[u8]| {
    let vars = BTreeMap::from([("X".to_string(), "1".to_string())]);
    let Ok(l) = nodestamp_spec::load("fuzz.yaml", data, &vars) else {
        return;
    };
    for epoch in [None, Some(0)] {
        let opts = CompileOptions {
            source_date_epoch: epoch,
            ..CompileOptions::default()
        };
        let c = compile(&l.spec, data, &opts);
        for st in [&c.os, &c.kubernetes, &c.node] {
            st.marshal().expect("a loaded spec marshals");
        }
    }
});
