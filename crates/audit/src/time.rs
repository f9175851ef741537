//! RFC 3339 timestamps in UTC, with milliseconds: `2025-01-31T23:59:59.123Z`.
//!
//! Owns the one conversion from `SystemTime` to the civil calendar that the audit trail needs,
//! so the crate carries no date library. Proleptic Gregorian calendar, no leap seconds (as
//! Unix time itself), years 0000 to 9999; times outside that range are clamped to its ends.

use std::time::{SystemTime, UNIX_EPOCH};

/// Days in each month of a common year.
const MONTH_DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// Formats `at` as RFC 3339 in UTC with millisecond precision.
pub fn rfc3339(at: SystemTime) -> String {
    let millis = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_millis()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_millis()).unwrap_or(i128::MAX),
    };
    // 0000-01-01 and 9999-12-31T23:59:59.999 in Unix milliseconds.
    let millis = millis.clamp(-62_167_219_200_000, 253_402_300_799_999);
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

fn is_leap(year: i128) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn year_days(year: i128) -> i128 {
    if is_leap(year) {
        366
    } else {
        365
    }
}

/// Year, month and day of the day `days` after 1970-01-01 (negative: before it).
fn civil(mut days: i128) -> (i128, u32, u32) {
    // Whole 400-year cycles (146,097 days each) first, so the year loop stays short.
    let cycles = days.div_euclid(146_097);
    days = days.rem_euclid(146_097);
    let mut year = 1970 + cycles * 400;
    while days >= year_days(year) {
        days -= year_days(year);
        year += 1;
    }
    let mut month = 0;
    loop {
        let length = i128::from(MONTH_DAYS[month]) + i128::from(month == 1 && is_leap(year));
        if days < length {
            break;
        }
        days -= length;
        month += 1;
    }
    // month < 12 and days < 31 here, so both fit.
    (year, month as u32 + 1, days as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn agrees_with_the_system_date_command() {
        // A spread of instants: around the epoch, leap days, century rules, the far future.
        let mut seconds: Vec<i64> = vec![0, -1, 951_782_400, 951_868_799, 4_107_542_400];
        let mut x: i64 = 0x2545_F491;
        for _ in 0..2000 {
            // xorshift: a fixed pseudo-random sequence, so a failure is reproducible.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seconds.push(x.rem_euclid(16_000_000_000) - 2_000_000_000);
        }
        let input: String = seconds.iter().map(|s| format!("@{s}\n")).collect();
        let mut child = std::process::Command::new("date")
            .args(["-u", "-f", "-", "+%Y-%m-%dT%H:%M:%S.000Z"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the date command");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let expected = String::from_utf8(output.stdout).unwrap();
        for (s, want) in seconds.iter().zip(expected.lines()) {
            let at = if *s >= 0 {
                UNIX_EPOCH + Duration::from_secs(s.unsigned_abs())
            } else {
                UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
            };
            assert_eq!(rfc3339(at), want, "at {s}");
        }
        assert_eq!(expected.lines().count(), seconds.len());
    }

    #[test]
    fn milliseconds_are_kept() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_042);
        assert!(rfc3339(at).ends_with(":20.042Z"), "{}", rfc3339(at));
    }
}
