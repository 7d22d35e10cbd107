//! Plain column values in canonical form: by type, from pgoutput's text form, the same bytes in
//! every region (sorted JSON keys, timestamps with time zone in UTC).

use pgoutput::{ColumnValue, Oid};
use serde_json::Value;

use super::oid;
use crate::capture::Column;

pub(super) fn column_text(column: &Column) -> std::result::Result<Option<&str>, String> {
    match &column.value {
        ColumnValue::Null => Ok(None),
        ColumnValue::Text(bytes) => std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "the value is not UTF-8 (the database encoding must be UTF8)".to_owned()),
        ColumnValue::Binary(_) => {
            Err("the value came in binary format; the reader must stream text format".to_owned())
        }
        ColumnValue::UnchangedToast => Err("the value is an unchanged TOAST value".to_owned()),
    }
}

/// A plain column's canonical value, by its type (module docs).
pub(super) fn scalar(column: &Column) -> std::result::Result<Value, String> {
    match column_text(column)? {
        None => Ok(Value::Null),
        Some(text) => scalar_text(column.type_oid, text),
    }
}

pub(super) fn scalar_text(type_oid: Oid, text: &str) -> std::result::Result<Value, String> {
    let Oid(type_oid) = type_oid;
    match type_oid {
        oid::INT2 | oid::INT4 | oid::INT8 => text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{text:?} is not an integer")),
        oid::BOOL => match text {
            "t" => Ok(Value::Bool(true)),
            "f" => Ok(Value::Bool(false)),
            _ => Err(format!("{text:?} is not a boolean (t or f)")),
        },
        oid::FLOAT4 | oid::FLOAT8 => {
            let float = text
                .parse::<f64>()
                .map_err(|_| format!("{text:?} is not a floating-point number"))?;
            Ok(serde_json::Number::from_f64(float)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(text.to_owned())))
        }
        oid::JSON | oid::JSONB => {
            Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
        }
        oid::TIMESTAMPTZ => timestamptz_utc(text).map(Value::String).ok_or_else(|| {
            format!("{text:?} is not a timestamptz in ISO style (the reader's session needs DateStyle ISO)")
        }),
        oid::NUMERIC => Ok(Value::String(text.to_owned())),
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// A `timestamptz` as PostgreSQL prints it in `DateStyle` ISO (`2024-05-01 12:00:00.5+02`,
/// offsets `+05:30` or `-00:19:32`, a ` BC` suffix, `infinity`) as ISO-8601 in UTC:
/// `2024-05-01T10:00:00.5Z` (`infinity` and `-infinity` stay). The fraction keeps PostgreSQL's
/// digits without trailing zeros; a year outside 0000–9999 keeps its digits (with `-` before
/// year 0, astronomical numbering).
pub(super) fn timestamptz_utc(text: &str) -> Option<String> {
    if text == "infinity" || text == "-infinity" {
        return Some(text.to_owned());
    }
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(body) => (body, true),
        None => (text, false),
    };
    let (date, time) = body.split_once(' ')?;
    let mut parts = date.rsplitn(3, '-');
    let day: i64 = number(parts.next()?, 2)?;
    let month: i64 = number(parts.next()?, 2)?;
    let year_text = parts.next()?;
    let mut year: i64 = year_text
        .parse()
        .ok()
        .filter(|_| year_text.len() >= 4 && year_text.bytes().all(|b| b.is_ascii_digit()))?;
    if bc {
        year = 1 - year;
    }
    let sign_at = time.find(['+', '-'])?;
    let (clock, offset) = time.split_at(sign_at);
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, fraction),
        None => (clock, ""),
    };
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut hms = hms.split(':');
    let hour = number(hms.next()?, 2)?;
    let minute = number(hms.next()?, 2)?;
    let second = number(hms.next()?, 2)?;
    if hms.next().is_some()
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let (sign, offset) = offset.split_at(1);
    let mut offset_parts = offset.split(':');
    let mut offset_seconds = number(offset_parts.next()?, 2)? * 3600;
    if let Some(minutes) = offset_parts.next() {
        offset_seconds += number(minutes, 2)? * 60;
    }
    if let Some(seconds) = offset_parts.next() {
        offset_seconds += number(seconds, 2)?;
    }
    if offset_parts.next().is_some() {
        return None;
    }
    if sign == "-" {
        offset_seconds = -offset_seconds;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let utc = local - offset_seconds;
    let (y, m, d) = civil_from_days(utc.div_euclid(86_400));
    let seconds = utc.rem_euclid(86_400);
    let year = if y < 0 {
        format!("-{:04}", -y)
    } else {
        format!("{y:04}")
    };
    let fraction = fraction.trim_end_matches('0');
    let fraction = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{fraction}")
    };
    Some(format!(
        "{year}-{m:02}-{d:02}T{:02}:{:02}:{:02}{fraction}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    ))
}

/// Exactly `width` ASCII digits.
pub(super) fn number(text: &str, width: usize) -> Option<i64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day since 1970-01-01.
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
