//! fail2ban-style durations: `600`, `10m`, `1h`, `2h30m`, `1d`, `1w`. Bare numbers are seconds,
//! as in jail.conf, so an imported jail means the same thing here.
use std::time::Duration;

pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        let mut unit = String::from(c);
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let mult = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => {
                return Err(format!(
                    "unknown unit '{unit}' in duration '{t}' (use s, m, h, d, w)"
                ));
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("missing number before '{unit}' in '{t}'"))?;
        num.clear();
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration '{t}' is too large"))?;
    }
    if !num.is_empty() {
        return Err(format!(
            "number without unit at the end of '{t}' (e.g. write {num}s)"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// The shortest exact text for a duration, e.g. `1h`, `90s`, `2h30m`.
pub fn format(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fail2ban_forms() {
        assert_eq!(parse("600").unwrap(), Duration::from_secs(600));
        assert_eq!(parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("2h30m").unwrap(), Duration::from_secs(9000));
        assert_eq!(parse("1w").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse("1 day").unwrap(), Duration::from_secs(86_400));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse("").is_err());
        assert!(parse("10x").is_err());
        assert!(parse("h").is_err());
        assert!(parse("5m3").is_err());
        assert!(parse("99999999999999999999w").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["1h", "10m", "2h30m", "1w", "90s", "1d1h"] {
            let d = parse(s).unwrap();
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
        assert_eq!(format(Duration::from_secs(3600)), "1h");
    }
}
