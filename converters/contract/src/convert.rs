//! The converter step's request: what the frontend asks `nodestamp convert` to do inside
//! BuildKit. The frontend builds a [`ConvertRequest`] and runs [`ConvertRequest::argv`]; the CLI
//! parses those arguments with its own flags, and a test in the CLI parses `argv` back, so a
//! flag renamed on one side fails there instead of in a build.

/// `nodestamp convert` as the disk targets run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertRequest {
    /// Disk formats (`raw`, `qcow2`, `vmdk`, `vhd`, `ova`, `gce`), in order.
    pub formats: Vec<String>,
    /// The directory that receives `<name>.<format>`.
    pub output_dir: String,
    /// The image name: file names, boot entry, UUID seed.
    pub name: String,
    /// Disk size in bytes; `None` sizes the disk to its content.
    pub size: Option<u64>,
    /// `uefi`, `bios` or `hybrid`.
    pub firmware: String,
    /// The node's root filesystem (a directory).
    pub rootfs: String,
}

impl ConvertRequest {
    /// The whole command line, program name first.
    pub fn argv(&self) -> Vec<String> {
        let mut args = vec!["nodestamp".to_string(), "convert".into(), "--quiet".into()];
        for f in &self.formats {
            args.extend(["--format".into(), f.clone()]);
        }
        args.extend([
            "--output-dir".into(),
            self.output_dir.clone(),
            "--name".into(),
            self.name.clone(),
        ]);
        if let Some(size) = self.size {
            args.extend(["--size".into(), size.to_string()]);
        }
        args.extend(["--firmware".into(), self.firmware.clone()]);
        args.push(self.rootfs.clone());
        args
    }
}
