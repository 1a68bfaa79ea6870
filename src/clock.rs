//! Wall-clock time in whole seconds, the unit bans, findtime and log dates are kept in. The one
//! place that reads the system clock; everything below takes `now` as an argument.

/// Seconds since the Unix epoch (0 if the clock is before 1970, which only a broken RTC gives).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
