//! Disk sizes: plain bytes or a whole number with a binary unit (`KiB`, `MiB`, `GiB`, `TiB`).
//! Decimal and ambiguous units (`GB`, `G`) are refused, so that 10^9 and 2^30 are never
//! confused, with a help line saying what to write instead.

use std::fmt;

/// Why a size was refused: the message, and what to write instead when that is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SizeError {
    pub message: String,
    pub help: Option<String>,
}

impl SizeError {
    fn new(message: impl Into<String>) -> SizeError {
        SizeError {
            message: message.into(),
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> SizeError {
        self.help = Some(help.into());
        self
    }
}

/// One mebibyte (2^20 bytes).
pub const MIB: u64 = 1 << 20;
/// One gibibyte (2^30 bytes).
pub const GIB: u64 = 1 << 30;

/// `1.5 GiB`-style rendering.
pub fn human(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{:.2} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

/// A size as a `--size` argument, rounded up to what `human` shows.
pub fn size_arg(bytes: u64) -> String {
    format!("{}MiB", bytes.div_ceil(MIB))
}

/// What the accepted forms are, for messages.
pub const ACCEPTED: &str =
    "expected a size in bytes or with a binary unit (KiB, MiB, GiB, TiB) like 8GiB";

/// A value quoted for a message: `"8GB"`, or `""` for an empty one.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Parses a disk size: `8589934592`, `8GiB`, `512MiB`. The result is larger than 0 and a whole
/// number of 512-byte sectors.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let mult: Option<u64> = match unit {
        "" => Some(1),
        "KiB" => Some(1 << 10),
        "MiB" => Some(1 << 20),
        "GiB" => Some(1 << 30),
        "TiB" => Some(1 << 40),
        _ => None,
    };
    let bad = || SizeError::new(format!("{ACCEPTED}, got {}", Shown(s)));
    let Some(mult) = mult else {
        if num.is_empty() {
            return Err(bad());
        }
        let unit_t = unit.trim_start();
        if unit_t.starts_with('.') {
            return Err(bad()
                .help("use a whole number with a smaller unit, e.g. 1536MiB instead of 1.5GiB"));
        }
        let binary = match unit_t.to_ascii_lowercase().as_str() {
            "k" | "kb" | "kib" => Some(("KiB", 10)),
            "m" | "mb" | "mib" => Some(("MiB", 20)),
            "g" | "gb" | "gib" => Some(("GiB", 30)),
            "t" | "tb" | "tib" => Some(("TiB", 40)),
            _ => None,
        };
        return Err(match binary {
            Some((b, exp)) => bad().help(format!(
                "write {num}{b} ({num} × 2^{exp} bytes); decimal or ambiguous units like GB or G are not accepted, so 10^9 and 2^30 cannot be confused, and no space goes between number and unit"
            )),
            None => bad(),
        });
    };
    if num.is_empty() {
        return Err(bad());
    }
    let too_large = || SizeError::new(format!("size {} is too large", Shown(s)));
    let n: u64 = num.parse().map_err(|_| too_large())?;
    let bytes = n.checked_mul(mult).ok_or_else(too_large)?;
    if bytes == 0 {
        return Err(SizeError::new("the disk size must be larger than 0"));
    }
    if bytes % 512 != 0 {
        return Err(SizeError::new(format!(
            "the disk size must be a whole number of 512-byte sectors, got {bytes} bytes"
        ))
        .help("use a binary unit, e.g. 8GiB"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_units_and_bytes_are_accepted() {
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("8589934592"), Ok(8 << 30));
        assert_eq!(parse_size(" 8GiB "), Ok(8 << 30));
    }

    #[test]
    fn ambiguous_units_are_refused_with_the_binary_spelling() {
        for (bad, want) in [
            ("8GB", "8GiB"),
            ("10G", "10GiB"),
            ("8 GB", "8GiB"),
            ("8gib", "8GiB"),
            ("5m", "5MiB"),
        ] {
            let e = parse_size(bad).unwrap_err();
            assert_eq!(e.message, format!("{ACCEPTED}, got {bad:?}"));
            let help = e.help.unwrap_or_default();
            assert!(
                help.starts_with(&format!("write {want} (")),
                "{bad}: {help}"
            );
        }
        let e = parse_size("1.5GiB").unwrap_err();
        assert!(e.help.unwrap().contains("1536MiB"));
    }

    #[test]
    fn nonsense_zero_overflow_and_odd_sizes_are_refused() {
        for bad in ["", "GiB", "big", "-1GiB", "-8GiB", "8 GiB", "5XB", "0x10"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.message.starts_with(ACCEPTED), "{bad}: {e}");
        }
        for zero in ["0", "0GiB"] {
            assert_eq!(
                parse_size(zero).unwrap_err().message,
                "the disk size must be larger than 0"
            );
        }
        assert!(
            parse_size("99999999999999999999TiB")
                .unwrap_err()
                .message
                .contains("too large")
        );
        assert!(
            parse_size("99999999TiB")
                .unwrap_err()
                .message
                .contains("too large")
        );
        let odd = parse_size("1000").unwrap_err();
        assert!(odd.message.contains("512-byte sectors"), "{odd}");
        assert_eq!(odd.help.as_deref(), Some("use a binary unit, e.g. 8GiB"));
    }
}
