use serde_json::{Value, json};

use super::*;
use nodestamp_spec::diag::RULES;

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn json_of(md: &Metadata) -> Value {
    serde_json::from_slice(&md["result.json"]).unwrap()
}

fn text_of(md: &Metadata) -> String {
    String::from_utf8(md["result.txt"].clone()).unwrap()
}

const PLAIN: &str = "version: 1\nos:\n  from: debian:bookworm\n";

#[test]
fn requests_parse_and_unknown_ones_name_the_accepted() {
    assert_eq!(Request::parse(TARGETS).unwrap(), Request::Targets);
    assert_eq!(Request::parse(LINT).unwrap(), Request::Lint);
    let err = Request::parse("frontend.convertllb").unwrap_err();
    assert_eq!(
        err.message,
        "unsupported request frontend.convertllb: nodestamp answers --call outline, targets, \
         check, subrequests.describe"
    );
}

#[test]
fn describe_lists_every_request() {
    let md = describe();
    assert_eq!(md["version"], b"1.0.0");
    let v = json_of(&md);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [OUTLINE, TARGETS, LINT, DESCRIBE]);
    assert_eq!(v[2]["type"], "rpc");
    assert_eq!(v[2]["metadata"][2]["name"], "result.statuscode");
    assert_eq!(
        text_of(&md).lines().nth(3),
        Some("lint                 1.0.0   Check the spec: its errors and warnings")
    );
}

#[test]
fn targets_mark_the_default_and_what_this_spec_cannot_build() {
    let md = targets("node.yaml", PLAIN.as_bytes(), &BTreeMap::new()).unwrap();
    let v = json_of(&md);
    let t = v["targets"].as_array().unwrap();
    assert_eq!(t.len(), Target::NAMES.len());
    assert_eq!(t[0]["name"], "node");
    assert_eq!(t[0]["default"], true);
    assert!(t[1].get("default").is_none());
    let desc = |name: &str| {
        t.iter().find(|x| x["name"] == name).unwrap()["description"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        desc("kubernetes"),
        "The Kubernetes layer alone, built from scratch (not for this spec: needs a kubernetes: section)"
    );
    assert!(desc("sysext").ends_with("(not for this spec: needs a kubernetes: section)"));
    assert!(desc("disk").ends_with("(not for this spec: needs disk.formats)"));
    assert!(desc("test").ends_with("(not for this spec: needs a tests: section)"));
    assert_eq!(desc("qcow2"), "A bootable disk of the node, node.qcow2");
    assert_eq!(desc("os"), "The OS layer alone");
    // The os target points at the os: section (line 2), in the one source sent along.
    assert_eq!(t[1]["location"]["ranges"][0]["start"]["line"], 3);
    assert_eq!(
        v["sources"][0],
        "dmVyc2lvbjogMQpvczoKICBmcm9tOiBkZWJpYW46Ym9va3dvcm0K"
    );
    let text = text_of(&md);
    assert!(
        text.starts_with("TARGET         DESCRIPTION\nnode (default) The node image"),
        "{text}"
    );

    // With the sections, every target applies; an undefined variable does not hide them.
    let full = "version: 1\nname: n1\nos:\n  from: debian\nkubernetes:\n  version: ${K8S}\n\
                disk:\n  formats: [raw, qcow2]\ntests:\n  commands: [{run: 'true'}]\n";
    let md = targets("node.yaml", full.as_bytes(), &BTreeMap::new()).unwrap();
    let text = text_of(&md);
    assert!(!text.contains("not for this spec"), "{text}");
    assert!(
        text.contains(
            "disk           A bootable disk in each format of disk.formats (raw, qcow2)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "sysext         The Kubernetes layer as a systemd system extension, n1.raw\n"
        ),
        "{text}"
    );
}

#[test]
fn targets_of_a_spec_that_is_not_yaml_fail_at_its_line() {
    let err = targets("node.yaml", b"version: 1\nos: [\n", &BTreeMap::new()).unwrap_err();
    assert!(
        err.message.starts_with("node.yaml:3:1: invalid YAML"),
        "{}",
        err.message
    );
    assert!(err.location.is_some());
}

const VARS: &str = r#"version: 1
os:
  from: debian:${SUITE}
  packages: ["kubelet=${K8S:-1.32.3}", curl]
  build:
    secrets: [{id: apt-auth}]
  run:
    - {command: 'true', secrets: [{id: apt-auth}, {id: token, env: TOKEN}]}
kubernetes:
  version: ${K8S:-1.32.3}
"#;

#[test]
fn outline_lists_each_variable_with_its_default_and_lines() {
    let md = outline("node.yaml", VARS.as_bytes(), &BTreeMap::new(), "").unwrap();
    let v = json_of(&md);
    assert_eq!(v["name"], "node");
    assert_eq!(
        v["args"],
        json!([
            {
                "name": "SUITE",
                "description": "required; used by os.from (line 3)",
                "location": {"sourceIndex": 0, "ranges": [
                    {"start": {"line": 3, "character": 15}, "end": {"line": 3, "character": 23}}
                ]}
            },
            {
                "name": "K8S",
                "description": "used by os.packages[0] (line 4), kubernetes.version (line 10)",
                "value": "1.32.3",
                "location": {"sourceIndex": 0, "ranges": [
                    {"start": {"line": 4, "character": 22}, "end": {"line": 4, "character": 36}},
                    {"start": {"line": 10, "character": 11}, "end": {"line": 10, "character": 25}}
                ]}
            }
        ])
    );
    let secrets = v["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2);
    assert_eq!(secrets[0]["name"], "apt-auth");
    assert_eq!(
        secrets[0]["location"]["ranges"].as_array().unwrap().len(),
        2
    );
    assert_eq!(secrets[1]["name"], "token");
    let text = text_of(&md);
    assert!(
        text.contains(
            "BUILD ARG   VALUE    DESCRIPTION\n\
             SUITE                required; used by os.from (line 3)\n\
             K8S         1.32.3   used by os.packages[0] (line 4), kubernetes.version (line 10)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("SECRET     REQUIRED\napt-auth   true\ntoken      true\n"),
        "{text}"
    );

    // A build arg given: no longer required; the target asked about is named.
    let md = outline(
        "node.yaml",
        VARS.as_bytes(),
        &args(&[("SUITE", "trixie")]),
        "os",
    )
    .unwrap();
    let v = json_of(&md);
    assert_eq!(v["name"], "os");
    assert_eq!(v["description"], "The OS layer alone");
    assert_eq!(v["args"][0]["description"], "used by os.from (line 3)");
}

#[test]
fn outline_of_a_spec_without_variables_has_none() {
    let v = json_of(&outline("node.yaml", PLAIN.as_bytes(), &BTreeMap::new(), "").unwrap());
    assert!(v.get("args").is_none());
    assert!(v.get("secrets").is_none());
}

const WARNINGS: &str = r#"version: 1
os:
  from: debian
  packages: [curl, curl]
  storage:
    files:
      - {path: /etc/a, mode: 644, contents: {inline: a}}
  systemd:
    units:
      - {name: idle.service}
  passwd:
    users:
      - {name: core, password_hash: hunter2}
kubernetes:
  components:
    - {name: kubelet, local: kubelet}
  systemd:
    units:
      - {name: ghost.service, enabled: true}
disk:
  formats: [raw, raw]
"#;

#[test]
fn lint_names_every_warning_by_rule_with_its_range() {
    let md = lint("node.yaml", WARNINGS.as_bytes(), &BTreeMap::new(), "");
    assert_eq!(md["result.statuscode"], b"1");
    let v = json_of(&md);
    assert!(v.get("buildError").is_none());
    let rules: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["ruleName"].as_str().unwrap())
        .collect();
    // Every rule shows up, in file order.
    assert_eq!(
        rules,
        [
            "DuplicatePackage",
            "DecimalMode",
            "UnitWithoutEffect",
            "PasswordNotHashed",
            "NoContainerRuntime",
            "UndefinedUnit",
            "DuplicateDiskFormat"
        ]
    );
    assert_eq!(rules.len(), RULES.len());
    let mode = &v["warnings"][1];
    assert_eq!(
        mode["description"],
        "A mode without a leading 0 is decimal, not octal"
    );
    assert!(
        mode["detail"]
            .as_str()
            .unwrap()
            .starts_with("os.storage.files[0].mode: mode 644 has no leading 0"),
        "{mode}"
    );
    assert_eq!(
        mode["location"],
        json!({"sourceIndex": 0, "ranges": [
            {"start": {"line": 7, "character": 29}, "end": {"line": 7, "character": 32}}
        ]})
    );
    assert_eq!(v["sources"][0]["filename"], "node.yaml");
    assert_eq!(v["sources"][0]["language"], "YAML");
    let text = text_of(&md);
    assert!(
        text.starts_with(
            "Check complete, 7 warnings have been found!\n\nWARNING: DuplicatePackage\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "\nWARNING: DecimalMode\nos.storage.files[0].mode: mode 644 has no leading 0, so it is \
             decimal 644 (octal 01204), not octal 0644 (write 0644 if you meant octal; a leading 0 \
             (or 0o) marks an octal mode, as in Butane)\nnode.yaml:7\n--------------------\n   \
             5 |       storage:\n   6 |         files:\n   7 | >>>       - {path: /etc/a, mode: 644, \
             contents: {inline: a}}\n   8 |       systemd:\n   9 |         units:\n--------------------\n"
        ),
        "{text}"
    );
}

#[test]
fn lint_of_a_clean_spec_is_status_0() {
    let md = lint("node.yaml", PLAIN.as_bytes(), &BTreeMap::new(), "");
    assert_eq!(md["result.statuscode"], b"0");
    let v = json_of(&md);
    assert_eq!(v["warnings"], json!([]));
    assert!(v.get("buildError").is_none());
    assert_eq!(text_of(&md), "Check complete, no warnings found.\n");
}

#[test]
fn lint_of_a_broken_spec_reports_every_error_and_its_range() {
    let src = "version: 1\nos:\n  from: debian\n  packges: [curl]\n  storage:\n    files:\n      \
               - {path: etc/a, mode: 644}\n";
    let md = lint("node.yaml", src.as_bytes(), &BTreeMap::new(), "");
    assert_eq!(md["result.statuscode"], b"1");
    let v = json_of(&md);
    let err = &v["buildError"];
    let message = err["message"].as_str().unwrap();
    assert!(message.starts_with("2 errors in node.yaml:\n"), "{message}");
    assert!(
        message.contains("node.yaml:4:3: os.packges: unknown key `packges`"),
        "{message}"
    );
    assert!(
        message.contains("node.yaml:7:16: os.storage.files[0].path"),
        "{message}"
    );
    let lines: Vec<i64> = err["location"]["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["start"]["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [4, 7]);
    // The warning found on the way is there too.
    assert_eq!(v["warnings"][0]["ruleName"], "DecimalMode");

    // Not YAML at all: the error and its line.
    let v = json_of(&lint("node.yaml", b"os: [\n", &BTreeMap::new(), ""));
    assert!(
        v["buildError"]["message"]
            .as_str()
            .unwrap()
            .starts_with("node.yaml:2:1: invalid YAML")
    );
    // A target this spec cannot build is an error of the check too.
    let v = json_of(&lint(
        "node.yaml",
        PLAIN.as_bytes(),
        &BTreeMap::new(),
        "kubernetes",
    ));
    assert!(
        v["buildError"]["message"]
            .as_str()
            .unwrap()
            .starts_with("target \"kubernetes\" needs a kubernetes section in node.yaml"),
        "{v}"
    );
    assert!(
        v["buildError"]["message"]
            .as_str()
            .unwrap()
            .starts_with("target \"kubernetes\" needs a kubernetes section in node.yaml")
    );
    // An undefined variable is an error, as in a build; the build arg fixes it.
    let src = "version: 1\nos:\n  from: debian:${SUITE}\n";
    let v = json_of(&lint("node.yaml", src.as_bytes(), &BTreeMap::new(), ""));
    assert!(
        v["buildError"]["message"]
            .as_str()
            .unwrap()
            .contains("undefined variable `SUITE`")
    );
    let md = lint(
        "node.yaml",
        src.as_bytes(),
        &args(&[("SUITE", "trixie")]),
        "",
    );
    assert_eq!(md["result.statuscode"], b"0");
}

#[test]
fn warn_request_carries_rule_line_and_source() {
    let loaded = nodestamp_spec::load("node.yaml", WARNINGS.as_bytes(), &BTreeMap::new()).unwrap();
    let w = loaded
        .warnings
        .iter()
        .find(|w| w.rule == Some("DecimalMode"))
        .unwrap();
    let req = warn_request("sha256:abc", "node.yaml", WARNINGS.as_bytes(), w);
    assert_eq!(req.digest, "sha256:abc");
    assert_eq!(req.level, 1);
    let short = String::from_utf8(req.short).unwrap();
    assert!(
        short.starts_with("DecimalMode: os.storage.files[0].mode: mode 644 has no leading 0"),
        "{short}"
    );
    assert!(short.ends_with(" (line 7)"), "{short}");
    assert_eq!(
        req.detail[0],
        b"A mode without a leading 0 is decimal, not octal"
    );
    assert!(req.detail[1].starts_with(b"write 0644 if you meant octal"));
    let info = req.info.unwrap();
    assert_eq!(info.filename, "node.yaml");
    assert_eq!(info.data, WARNINGS.as_bytes());
    assert_eq!(
        req.ranges,
        vec![pb::Range {
            start: Some(pb::Position {
                line: 7,
                character: 29
            }),
            end: Some(pb::Position {
                line: 7,
                character: 32
            }),
        }]
    );
}

#[test]
fn excerpt_pads_like_buildkit() {
    let src = b"a\nb\nc\n";
    let at = |line| {
        nodestamp_spec::diag::Span::at(nodestamp_spec::diag::Pos {
            line,
            col: 1,
            offset: 0,
        })
    };
    assert_eq!(
        excerpt("f", src, at(1)),
        "f:1\n--------------------\n   1 | >>> a\n   2 |     b\n   3 |     c\n--------------------\n"
    );
    assert_eq!(excerpt("f", src, at(9)), "");
}

#[test]
fn table_aligns_like_tabwriter() {
    let rows = vec![
        vec!["A".to_owned(), "BB".to_owned(), "x".to_owned()],
        vec!["CCC".to_owned(), "D".to_owned(), "yy".to_owned()],
    ];
    assert_eq!(table(&rows, 1), "A   BB x\nCCC D  yy\n");
    assert_eq!(table(&rows, 3), "A     BB   x\nCCC   D    yy\n");
}
