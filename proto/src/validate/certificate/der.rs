//! Just enough DER to read an X.509 certificate's validity period (RFC 5280 §4.1): the
//! TBSCertificate's fifth element, two times.

use crate::calendar::{civil_from_days, days_from_civil};

/// `(notBefore, notAfter)` as Unix seconds.
pub(super) fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let (tag, certificate, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, tbs, _) = tlv(certificate)?;
    if tag != 0x30 {
        return None;
    }
    let mut rest = tbs;
    // The version is optional ([0] EXPLICIT); then serial, signature, issuer, validity.
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (tag, validity, _) = tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, not_before, rest) = tlv(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = tlv(rest)?;
    Some((not_before, time(tag, not_after)?))
}

/// One tag-length-value: the tag, the value, and what follows.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, tail) = rest.split_at(n);
        rest = tail;
        bytes
            .iter()
            .fold(0usize, |len, &b| len << 8 | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (value, tail) = rest.split_at(len);
    Some((tag, value, tail))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, value: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let (year, rest) = match (tag, value.len()) {
        (0x17, 13) => {
            let yy = digits(&value[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &value[2..])
        }
        (0x18, 15) => (digits(&value[..4])?, &value[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let [month, day, hour, minute, second] =
        [0, 2, 4, 6, 8].map(|i| digits(&rest[i..i + 2]).unwrap_or(-1));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    if [month, day, hour, minute, second].contains(&-1) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`, for error messages.
pub(super) fn format_time(unix: i64) -> String {
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_unix_seconds() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(time(0x17, b"701301000000Z"), None);
        assert_eq!(time(0x17, b"7001010000Z"), None);
        assert_eq!(format_time(2_147_483_648), "2038-01-19 03:14:08 UTC");
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
    }
}
