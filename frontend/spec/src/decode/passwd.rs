//! `os.passwd`: users and groups.

use serde::Serialize;

use super::*;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Passwd {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct User {
    pub span: Span,
    pub name: String,
    pub uid: Option<u32>,
    pub groups: Vec<String>,
    pub shell: Option<String>,
    pub password_hash: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Group {
    pub span: Span,
    pub name: String,
    pub gid: Option<u32>,
}

const PASSWD: &[&str] = &["users", "groups"];
const USER: &[&str] = &[
    "name",
    "uid",
    "groups",
    "shell",
    "password_hash",
    "ssh_authorized_keys",
    "password",
];
const GROUP: &[&str] = &["name", "gid"];

impl Cx<'_> {
    pub(super) fn passwd(&mut self, node: &Node, path: &str) -> Passwd {
        let mut pw = Passwd::default();
        let Some(f) = self.map(node, path, PASSWD) else {
            return pw;
        };
        let mut names: HashMap<String, u32> = HashMap::new();
        for (i, n) in self.list(&f, "users").iter().enumerate() {
            let ipath = index(&f.path("users"), i);
            let Some(uf) = self.map(n, &ipath, USER) else {
                continue;
            };
            let mut user = User {
                span: n.span,
                ..User::default()
            };
            if let Some(name) = self.required(&uf, "name", "a user name", check::account_name) {
                self.unique(&mut names, &name, &uf.path("name"), "user");
                user.name = name.value;
            }
            user.uid = uf
                .get("uid")
                .and_then(|u| self.uint(u, &uf.path("uid"), "a numeric uid"));
            user.groups = self
                .strings(&uf, "groups", "a group name", check::account_name)
                .into_iter()
                .map(|g| g.value)
                .collect();
            user.shell = self
                .field(
                    &uf,
                    "shell",
                    "an absolute path like /bin/bash",
                    check::abs_path,
                )
                .map(|s| s.value);
            if let Some(span) = uf.key_span("password") {
                self.error_help(
                    &uf.path("password"),
                    span,
                    "plaintext passwords are not accepted; set `password_hash` instead",
                    "hash the password with `mkpasswd --method=yescrypt` or `openssl passwd -6` and put the result in `password_hash`",
                );
            }
            if let Some(h) = self.field(&uf, "password_hash", "a crypt(3) hash", check::non_empty) {
                let looks_hashed = h.value.starts_with('$') || h.value == "!" || h.value == "*";
                if !looks_hashed {
                    self.warn(
                        "PasswordNotHashed",
                        &uf.path("password_hash"),
                        h.span,
                        Problem::new("`password_hash` does not look like a crypt(3) hash such as $y$… or $6$…")
                            .help("hash the password with `mkpasswd --method=yescrypt` or `openssl passwd -6`"),
                    );
                }
                user.password_hash = Some(h.value);
            }
            user.ssh_authorized_keys = self
                .strings(
                    &uf,
                    "ssh_authorized_keys",
                    "an SSH public key",
                    check::one_line,
                )
                .into_iter()
                .map(|k| k.value)
                .collect();
            pw.users.push(user);
        }
        let mut names: HashMap<String, u32> = HashMap::new();
        for (i, n) in self.list(&f, "groups").iter().enumerate() {
            let ipath = index(&f.path("groups"), i);
            let Some(gf) = self.map(n, &ipath, GROUP) else {
                continue;
            };
            let mut group = Group {
                span: n.span,
                ..Group::default()
            };
            if let Some(name) = self.required(&gf, "name", "a group name", check::account_name) {
                self.unique(&mut names, &name, &gf.path("name"), "group");
                group.name = name.value;
            }
            group.gid = gf
                .get("gid")
                .and_then(|g| self.uint(g, &gf.path("gid"), "a numeric gid"));
            pw.groups.push(group);
        }
        pw
    }
}
