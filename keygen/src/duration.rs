//! The one syntax for lengths of time on the command lines of the benchmarks and the
//! simulator: a number (decimals allowed) and a unit, `ms`, `s` (the default), `m` or `min`,
//! `h`: `500ms`, `60`, `1.5s`, `10m`, `2h`.

use std::time::Duration;

/// The duration `text` names; an error that quotes it otherwise (an unknown unit, no
/// number, a negative or too large value).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}: want a number and ms, s, m or h"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1e3,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?}: ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("bad duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        let ok = |text: &str| parse_duration(text).expect(text);
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("60"), Duration::from_secs(60));
        assert_eq!(ok("60s"), Duration::from_secs(60));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("10min"), Duration::from_secs(600));
        assert_eq!(ok(" 2h "), Duration::from_secs(7200));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn bad_durations_are_errors_not_panics() {
        for text in [
            "",
            "s",
            "10x",
            "1e3",
            "-5s",
            "1.2.3s",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} parsed");
        }
    }
}
