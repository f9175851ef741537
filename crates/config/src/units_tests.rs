//! Tests of the duration and byte size grammars.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn durations_in_every_unit_and_combination() {
    assert_eq!(parse_duration("250ms"), Ok(ms(250)));
    assert_eq!(parse_duration("5s"), Ok(ms(5_000)));
    assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
    assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
    assert_eq!(parse_duration("1h30m"), Ok(ms(5_400_000)));
    assert_eq!(parse_duration("2m5s10ms"), Ok(ms(125_010)));
    assert_eq!(parse_duration("0s"), Ok(ms(0)));
    assert_eq!(parse_duration("90s"), Ok(ms(90_000)));
}

#[test]
fn durations_refuse_what_the_grammar_lacks() {
    assert_eq!(parse_duration(""), Err(UnitError::Empty));
    assert_eq!(parse_duration("5"), Err(UnitError::MissingUnit));
    assert_eq!(parse_duration("s"), Err(UnitError::MissingUnit));
    assert_eq!(
        parse_duration("5x"),
        Err(UnitError::UnknownUnit("x".into()))
    );
    assert_eq!(
        parse_duration("5 s"),
        Err(UnitError::UnknownUnit(" s".into()))
    );
    assert_eq!(parse_duration("1.5s"), Err(UnitError::Fraction));
    assert_eq!(parse_duration("30m1h"), Err(UnitError::UnitOrder));
    assert_eq!(parse_duration("1s1s"), Err(UnitError::UnitOrder));
    assert_eq!(parse_duration("-5s"), Err(UnitError::MissingUnit));
    assert_eq!(
        parse_duration("99999999999999999999h"),
        Err(UnitError::Overflow)
    );
    assert_eq!(
        parse_duration("9999999999999999h"),
        Err(UnitError::Overflow)
    );
}

#[test]
fn durations_format_back_to_the_grammar() {
    for text in ["250ms", "5s", "1m", "1h", "1h30m", "2m5s10ms", "0s"] {
        let parsed = parse_duration(text).unwrap();
        assert_eq!(format_duration(parsed), text);
    }
    assert_eq!(format_duration(ms(90_000)), "1m30s");
    assert_eq!(format_duration(Duration::from_nanos(1_500)), "1.5µs");
}

#[test]
fn byte_sizes_in_every_unit() {
    assert_eq!(parse_byte_size("65536"), Ok(65_536));
    assert_eq!(parse_byte_size("512B"), Ok(512));
    assert_eq!(parse_byte_size("64KiB"), Ok(65_536));
    assert_eq!(parse_byte_size("16MiB"), Ok(16 * 1024 * 1024));
    assert_eq!(parse_byte_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_byte_size("16mib"), Ok(16 * 1024 * 1024));
    assert_eq!(parse_byte_size("16 MiB"), Ok(16 * 1024 * 1024));
}

#[test]
fn byte_sizes_refuse_decimal_and_unknown_units() {
    assert_eq!(parse_byte_size(""), Err(UnitError::Empty));
    assert_eq!(
        parse_byte_size("16MB"),
        Err(UnitError::DecimalUnit("MB".into()))
    );
    assert_eq!(
        parse_byte_size("64k"),
        Err(UnitError::DecimalUnit("k".into()))
    );
    assert_eq!(
        parse_byte_size("3TiB"),
        Err(UnitError::UnknownUnit("TiB".into()))
    );
    assert_eq!(parse_byte_size("1.5MiB"), Err(UnitError::Fraction));
    assert_eq!(parse_byte_size("MiB"), Err(UnitError::MissingUnit));
    assert_eq!(parse_byte_size("99999999999GiB"), Err(UnitError::Overflow));
}

#[test]
fn byte_sizes_format_with_the_largest_exact_unit() {
    assert_eq!(format_byte_size(16 * 1024 * 1024), "16MiB");
    assert_eq!(format_byte_size(65_536), "64KiB");
    assert_eq!(format_byte_size(1_000), "1000B");
    assert_eq!(format_byte_size(0), "0B");
    // 1.5 KiB has no exact binary unit, so it stays in bytes.
    assert_eq!(format_byte_size(1536), "1536B");
}
