//! Resource quantities (`100m`, `1.5`, `64Mi`, `1G`, `2e3`), as upstream's
//! `k8s.io/apimachinery/pkg/api/resource` writes them, read into whole units the runtime uses.

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct ParseError(pub String);

/// The quantity in thousandths of a unit (CPU in millicores), rounded up as upstream's `MilliValue`.
pub fn milli_value(q: &str) -> Result<i64, ParseError> {
    scaled(q, 1000.0)
}

/// The quantity in whole units (memory in bytes), rounded up as upstream's `Value`.
pub fn value(q: &str) -> Result<i64, ParseError> {
    scaled(q, 1.0)
}

fn scaled(q: &str, scale: f64) -> Result<i64, ParseError> {
    let bad = || ParseError(q.to_string());
    let s = q.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| bad())?;
            10f64.powi(e)
        }
        _ => return Err(bad()),
    };
    let v = number * multiplier * scale;
    if !v.is_finite() || v.abs() > i64::MAX as f64 {
        return Err(bad());
    }
    // Round away from zero, ignoring float noise such as 0.1 * 1000 = 100.00000000000001.
    let rounded = (v * 1e6).round() / 1e6;
    Ok(rounded.ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_quantities_parse_as_upstream() {
        assert_eq!(milli_value("100m").unwrap(), 100);
        assert_eq!(milli_value("1.5").unwrap(), 1500);
        assert_eq!(milli_value("2").unwrap(), 2000);
        assert_eq!(milli_value("0.1").unwrap(), 100);
        assert_eq!(value("64Mi").unwrap(), 64 * 1024 * 1024);
        assert_eq!(value("1G").unwrap(), 1_000_000_000);
        assert_eq!(value("2e3").unwrap(), 2000);
        assert_eq!(value("1.5Ki").unwrap(), 1536);
        assert!(value("12Q").is_err());
        assert!(value("abc").is_err());
    }
}
