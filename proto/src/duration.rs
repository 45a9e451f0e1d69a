//! Durations: the one text grammar of every program's flags (`10s`, `500ms`, `1.5s`, `2m`, `1h`,
//! or a bare number of seconds), and the range of a configured `google.protobuf.Duration`.

use std::time::Duration;

/// The largest `seconds` of a `google.protobuf.Duration` (10,000 years, as the proto3 JSON
/// mapping allows).
pub const MAX_SECONDS: i64 = 315_576_000_000;

/// Parses a duration such as `10s`, `500ms`, `1.5s`, `2m`, `1h`, or `3` (seconds). Zero is
/// allowed; negative, non-finite and absurd (over 10,000 years) values are not.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(seconds.is_finite() && seconds <= MAX_SECONDS as f64) {
        return Err(format!("{text:?} is out of range"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Like [`parse_duration`], refusing zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!("{:?} must be a positive duration", text.trim())),
        d => Ok(d),
    }
}

/// Why a configured duration is refused.
pub fn check_proto_duration(d: &prost_types::Duration) -> Result<(), String> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err("must be positive".into());
    }
    if d.seconds > MAX_SECONDS {
        return Err(format!("must be at most {MAX_SECONDS} seconds"));
    }
    if d.nanos > 999_999_999 {
        return Err("nanos must be at most 999,999,999".into());
    }
    if d.seconds == 0 && d.nanos == 0 {
        return Err("must be positive".into());
    }
    Ok(())
}

/// A configured duration as a `std` one; `None` for values the validator refuses.
pub fn from_proto(d: &prost_types::Duration) -> Option<Duration> {
    check_proto_duration(d).ok()?;
    Some(Duration::new(
        u64::try_from(d.seconds).ok()?,
        u32::try_from(d.nanos).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 7 "), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_positive_duration("0s").is_err());
        for bad in [
            "",
            "x",
            "-1s",
            "5 days",
            "1e400",
            "10y",
            "99999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn proto_range() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert!(check_proto_duration(&d(1, 0)).is_ok());
        assert!(check_proto_duration(&d(0, 1)).is_ok());
        assert!(check_proto_duration(&d(MAX_SECONDS, 999_999_999)).is_ok());
        for bad in [
            d(0, 0),
            d(-1, 0),
            d(0, -1),
            d(MAX_SECONDS + 1, 0),
            d(1, 1_000_000_000),
            d(i64::MAX, 0),
        ] {
            assert!(check_proto_duration(&bad).is_err(), "{bad:?}");
            assert_eq!(from_proto(&bad), None);
        }
        assert_eq!(from_proto(&d(2, 5)), Some(Duration::new(2, 5)));
    }
}
