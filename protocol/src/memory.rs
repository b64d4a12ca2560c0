//! Memory budgets: the limit a worker is held to, how sizes are written, and the itemised
//! estimate of a run's peak memory that both sides show.
//!
//! A worker estimates its peak memory from the spec before it allocates anything and refuses
//! a run over its limit with [`exit::BAD_SPEC`](crate::exit::BAD_SPEC): an allocation of
//! hundreds of gigabytes otherwise aborts the process (or wakes the kernel's OOM killer) three
//! attempts in a row, with nothing to say why. The orchestrator runs the same estimate when it
//! plans, so a run that cannot fit is refused before anything is written, and hands each
//! worker its share of the machine in [`MAX_MEMORY_ENV`].

use std::fmt;

/// Environment variable holding a worker's memory limit in bytes (a decimal integer). Without
/// it a worker is held to the memory its machine has available ([`available_memory`]). It is
/// not part of the spec, so a different limit never changes a run's id.
pub const MAX_MEMORY_ENV: &str = "CLORCH_MAX_MEMORY";

/// One line of an estimate: what takes the memory and how many bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryItem {
    /// What it is, in a few words (`optimiser state (Adam)`).
    pub what: String,
    /// Bytes at its peak.
    pub bytes: u64,
}

/// A run's estimated peak memory, item by item (items of zero bytes are left out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The items, largest concern first as the estimator lists them.
    pub items: Vec<MemoryItem>,
}

impl MemoryEstimate {
    /// Adds an item (nothing when `bytes` is 0).
    pub fn add(&mut self, what: impl Into<String>, bytes: u64) {
        if bytes > 0 {
            self.items.push(MemoryItem { what: what.into(), bytes });
        }
    }

    /// The sum of the items (saturating: an estimate past 16 EiB is still over any limit).
    pub fn total(&self) -> u64 {
        self.items.iter().fold(0u64, |sum, item| sum.saturating_add(item.bytes))
    }
}

/// `about 1.2 GiB: network parameters 400.0 MiB, gradients 400.0 MiB, …`
impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "about {}", format_size(self.total()))?;
        for (i, item) in self.items.iter().enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(f, "{sep}{} {}", item.what, format_size(item.bytes))?;
        }
        Ok(())
    }
}

/// A size in binary units with one decimal (`512 B`, `3.0 KiB`, `1.5 GiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The most a size may say: 1 EiB (no machine has it, and it keeps sums far from overflow).
pub const MAX_SIZE: u64 = 1 << 60;

/// Reads a size as written on a command line: a whole number of bytes, or a number (decimals
/// allowed) with a unit — `K`/`KB` (10³), `M`/`MB`, `G`/`GB`, `T`/`TB`, or `KiB` (2¹⁰),
/// `MiB`, `GiB`, `TiB`; case-insensitive, a space before the unit allowed. At most
/// [`MAX_SIZE`]; zero is refused (no run fits in nothing).
pub fn parse_size(text: &str) -> Result<u64, String> {
    const FORMS: &str = "a size such as 4GiB, 500MB or 1073741824 (bytes)";
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return Err(format!("expected {FORMS}, found {text:?}")),
    };
    let value: f64 = match number.parse() {
        Ok(v) if !number.is_empty() => v,
        _ => return Err(format!("expected {FORMS}, found {text:?}")),
    };
    let bytes = value * multiplier as f64;
    if bytes < 1.0 {
        return Err(format!("expected a positive size, found {text:?}"));
    }
    if bytes > MAX_SIZE as f64 {
        return Err(format!("{text:?} is more than the largest size, 1 EiB"));
    }
    Ok(bytes as u64)
}

/// The memory this machine has available for new work: `MemAvailable` of `/proc/meminfo` on
/// Linux (free memory plus the caches the kernel can drop). `None` where that cannot be read
/// (other systems): then no limit applies unless one is given.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.trim_start_matches("MemAvailable:").trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// A worker's limit: [`MAX_MEMORY_ENV`] when set (a malformed value is an error, not
/// ignored), else the machine's [`available_memory`], else none.
pub fn worker_limit() -> Result<Option<u64>, String> {
    match std::env::var(MAX_MEMORY_ENV) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{MAX_MEMORY_ENV}={text:?}: expected a number of bytes")),
        Err(std::env::VarError::NotPresent) => Ok(available_memory()),
        Err(e) => Err(format!("{MAX_MEMORY_ENV}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_decimal_and_binary_units() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1.5 gib"), Ok(3 << 29));
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("2k"), Ok(2000));
        for bad in ["", "GiB", "4 parsecs", "-1GiB", "0", "0.1", "1e3", "99999999999TiB", "1.2.3G"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(3 << 10), "3.0 KiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn an_estimate_lists_its_items_and_their_sum() {
        let mut e = MemoryEstimate::default();
        e.add("network parameters", 2 << 20);
        e.add("nothing", 0);
        e.add("gradients", 2 << 20);
        assert_eq!(e.items.len(), 2);
        assert_eq!(e.to_string(), "about 4.0 MiB: network parameters 2.0 MiB, gradients 2.0 MiB");
        e.add("huge", u64::MAX);
        assert_eq!(e.total(), u64::MAX);
    }

    #[test]
    fn this_machine_says_how_much_memory_it_has_available() {
        if cfg!(target_os = "linux") {
            assert!(available_memory().is_some_and(|b| b > 0));
        }
    }
}
