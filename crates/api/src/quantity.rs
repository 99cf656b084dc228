//! Kubernetes resource quantities (`100m`, `2Gi`, `1.5`, `1e3`) as exact integers.
//!
//! Everything downstream works in integers: millicores for CPU, bytes for memory. Fractions are
//! rounded up, as Kubernetes rounds requests.

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {text:?}: {reason}")]
pub struct QuantityError {
    pub text: String,
    pub reason: &'static str,
}

/// The value times 1000, rounded up: `100m` → 100, `2` → 2000, `1Ki` → 1_024_000.
pub fn parse_milli(text: &str) -> Result<i128, QuantityError> {
    let fail = |reason| QuantityError {
        text: text.to_owned(),
        reason,
    };
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        Some(_) => (false, text),
        None => return Err(fail("empty")),
    };
    let number_len = body
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = body.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(fail("missing number"));
    }
    if fraction.contains('.') {
        return Err(fail("more than one decimal point"));
    }
    let (mut exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| fail("bad exponent"))?;
            if !(-30..=30).contains(&exp) {
                return Err(fail("exponent out of range"));
            }
            (exp, 0)
        }
        _ => return Err(fail("unknown suffix")),
    };
    let digits = format!("{whole}{fraction}");
    if digits.len() > 30 {
        return Err(fail("too many digits"));
    }
    let mut mantissa: i128 = digits.parse().map_err(|_| fail("bad number"))?;
    let fraction_len = i32::try_from(fraction.len()).map_err(|_| fail("too many digits"))?;
    exp10 += 3 - fraction_len; // milli units
    mantissa = mantissa
        .checked_mul(1i128 << exp2)
        .ok_or_else(|| fail("too large"))?;
    let milli = if exp10 >= 0 {
        let scale = 10i128
            .checked_pow(exp10.unsigned_abs())
            .ok_or_else(|| fail("too large"))?;
        mantissa.checked_mul(scale).ok_or_else(|| fail("too large"))?
    } else {
        let scale = 10i128
            .checked_pow(exp10.unsigned_abs())
            .ok_or_else(|| fail("too large"))?;
        // Round away from zero, like resource.Quantity's MilliValue rounds requests up.
        (mantissa + scale - 1) / scale
    };
    Ok(if negative { -milli } else { milli })
}

/// The value rounded up to a whole unit: `100m` → 1, `2Gi` → 2147483648.
pub fn parse_value(text: &str) -> Result<i128, QuantityError> {
    let milli = parse_milli(text)?;
    Ok(if milli >= 0 {
        (milli + 999) / 1000
    } else {
        milli / 1000
    })
}

/// An amount of the resource `name` as Nodewright's integers count it: `cpu` in millicores,
/// everything else (memory and storage in bytes, pods, extended resources) in whole units.
pub fn parse_resource(name: &str, text: &str) -> Result<i128, QuantityError> {
    if name == "cpu" {
        parse_milli(text)
    } else {
        parse_value(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_resource("cpu", "1500m").unwrap(), 1500);
        assert_eq!(parse_resource("memory", "1Ki").unwrap(), 1024);
        assert_eq!(parse_resource("pods", "100m").unwrap(), 1, "whole units round up");
        assert_eq!(parse_milli("100m").unwrap(), 100);
        assert_eq!(parse_milli("1").unwrap(), 1000);
        assert_eq!(parse_milli("1.5").unwrap(), 1500);
        assert_eq!(parse_milli("0.1").unwrap(), 100);
        assert_eq!(parse_milli(".5").unwrap(), 500);
        assert_eq!(parse_value("2Gi").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_value("400000Gi").unwrap(), 400_000 * (1i128 << 30));
        assert_eq!(parse_value("1k").unwrap(), 1000);
        assert_eq!(parse_value("1e3").unwrap(), 1000);
        assert_eq!(parse_value("6903Mi").unwrap(), 6903 * 1024 * 1024);
        assert_eq!(parse_value("100000").unwrap(), 100_000);
        assert_eq!(parse_milli("-2").unwrap(), -2000);
        assert_eq!(parse_milli("1n").unwrap(), 1, "fractions of a milli round up");
        assert_eq!(parse_value("100m").unwrap(), 1);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "1Zi", "Gi", "1 Gi", "1e999", "-", "1ee3"] {
            assert!(parse_milli(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
