//! Spec loading alone: any bytes → a spec or diagnostics, rendered; never a panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let vars = BTreeMap::from([("X".to_string(), "1".to_string())]);
    if let Err(d) = nodestamp_spec::load("fuzz.yaml", data, &vars) {
        let _ = d.render(&String::from_utf8_lossy(data));
        let _ = d.to_json();
    }
});
