//! Durations as recipes write them (`90s`, `30m`, `2h`, `1d`, or seconds), SLURM's time limits
//! (`HH:MM:SS`, `D-HH:MM:SS`) and memory sizes (`2G`).

use std::time::Duration;

/// What a recipe duration may look like, for messages.
pub(super) const DURATION_FORMS: &str = "a duration such as `90s`, `30m`, `2h`, `1d` or a number of seconds";

/// Parses `90s`, `30m`, `2h`, `1d` or a bare number of seconds (`3600`). The amount is a whole
/// number; zero is refused because every duration in a recipe is a limit or a period.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("expected {DURATION_FORMS}, found `{text}`")),
    };
    let amount: u64 = digits.parse().map_err(|_| format!("expected {DURATION_FORMS}, found `{text}`"))?;
    seconds(
        amount
            .checked_mul(scale)
            .ok_or_else(|| format!("duration `{text}` is too long: at most 365 days"))?,
    )
}

/// The longest duration a recipe may write (365 days): every duration is a limit or a period
/// of one attempt, and a bound keeps deadline arithmetic far from overflow.
pub const MAX_DURATION_SECONDS: u64 = 365 * 86_400;

/// A positive number of seconds, at most [`MAX_DURATION_SECONDS`].
pub(super) fn seconds(amount: u64) -> Result<Duration, String> {
    if amount == 0 {
        Err("expected a positive duration, found 0".to_string())
    } else if amount > MAX_DURATION_SECONDS {
        Err(format!("expected a duration of at most 365 days ({MAX_DURATION_SECONDS} seconds), found {amount} seconds"))
    } else {
        Ok(Duration::from_secs(amount))
    }
}

/// Parses SLURM's `HH:MM:SS` or `D-HH:MM:SS` (minutes and seconds below 60, hours below 24
/// after a day count).
pub(super) fn parse_slurm_time(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a time limit `HH:MM:SS` or `D-HH:MM:SS`, found `{text}`");
    let (days, clock) = match text.split_once('-') {
        Some((days, clock)) => (Some(days.parse::<u64>().map_err(|_| bad())?), clock),
        None => (None, text),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return Err(bad());
    };
    let number = |p: &str| {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            Err(bad())
        } else {
            p.parse::<u64>().map_err(|_| bad())
        }
    };
    let (h, m, s) = (number(h)?, number(m)?, number(s)?);
    if m >= 60 || s >= 60 || (days.is_some() && h >= 24) {
        return Err(bad());
    }
    let total = days
        .unwrap_or(0)
        .checked_mul(86_400)
        .and_then(|d| d.checked_add(h.checked_mul(3_600)?))
        .and_then(|t| t.checked_add(m * 60 + s))
        .ok_or_else(|| format!("time limit `{text}` is too long: at most 365 days"))?;
    seconds(total)
}

/// Formats a duration the way `sbatch --time` reads it: `HH:MM:SS`, or `D-HH:MM:SS` from one
/// day on.
pub fn slurm_time(duration: Duration) -> String {
    let total = duration.as_secs();
    let (days, rest) = (total / 86_400, total % 86_400);
    let clock = format!("{:02}:{:02}:{:02}", rest / 3_600, rest % 3_600 / 60, rest % 60);
    if days > 0 {
        format!("{days}-{clock}")
    } else {
        clock
    }
}

/// Checks a SLURM memory size: a whole number with an optional unit `K`, `M`, `G` or `T`
/// (SLURM's default unit is megabytes).
pub(super) fn check_slurm_memory(text: &str) -> Result<(), String> {
    let digits = text.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.parse::<u64>().is_ok_and(|n| n > 0)
    {
        Ok(())
    } else {
        Err(format!("expected a memory size such as `500M` or `2G`, found `{text}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        for bad in ["", "2 hours", "h", "1.5h", "-3s", "10w"] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("expected a duration such as"), "{bad}: {error}");
        }
        assert!(parse_duration("0s").unwrap_err().contains("positive"));
    }

    #[test]
    fn slurm_times_round_trip() {
        assert_eq!(parse_slurm_time("01:30:00"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_slurm_time("2-03:00:05"), Ok(Duration::from_secs(2 * 86_400 + 3 * 3_600 + 5)));
        assert_eq!(slurm_time(Duration::from_secs(2 * 86_400 + 3 * 3_600 + 5)), "2-03:00:05");
        assert_eq!(slurm_time(Duration::from_secs(5_400)), "01:30:00");
        for bad in ["90", "1:60:00", "1-24:00:00", "a-01:00:00", "01:00", "00:00:00", "1:-1:00"] {
            assert!(parse_slurm_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_sizes() {
        assert!(check_slurm_memory("2G").is_ok());
        assert!(check_slurm_memory("500").is_ok());
        for bad in ["", "G", "2GB", "-1G", "0G", "1.5G"] {
            assert!(check_slurm_memory(bad).is_err(), "{bad}");
        }
    }
}
