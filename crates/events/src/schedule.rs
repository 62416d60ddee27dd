//! Cron schedules: a cron expression (five fields, or six with seconds
//! first) read in an IANA time zone.
use chrono::TimeZone;
use domain::UnixMillis;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    timezone: chrono_tz::Tz,
}

impl Schedule {
    /// Parses `expression` in `timezone`; the error says what is wrong.
    pub fn parse(expression: &str, timezone: &str) -> Result<Schedule, String> {
        let timezone: chrono_tz::Tz = timezone.parse().map_err(|_| {
            format!("time zone {timezone:?} is not an IANA time zone name such as Europe/Paris")
        })?;
        let fields = expression.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "cron schedule {expression:?} is invalid: it has {fields} fields, and a schedule has five (minute first) or six (second first)"
            ));
        }
        let cron = croner::parser::CronParser::new()
            .parse(expression)
            .map_err(|error| format!("cron schedule {expression:?} is invalid: {error}"))?;
        let schedule = Schedule { cron, timezone };
        // A day that no month has (30 February): it would never fire.
        if schedule.next_after(domain::now_millis()).is_none() {
            return Err(format!(
                "cron schedule {expression:?} never fires (no such date)"
            ));
        }
        Ok(schedule)
    }

    /// The first time of the schedule strictly after `after`.
    pub fn next_after(&self, after: UnixMillis) -> Option<UnixMillis> {
        let start = self.timezone.timestamp_millis_opt(after).single()?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|next| next.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_have_seconds_and_time_zones() {
        // 2026-01-01T00:00:00Z
        let new_year = 1_767_225_600_000;
        let every_ten_seconds = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            every_ten_seconds.next_after(new_year),
            Some(new_year + 10_000)
        );
        assert_eq!(
            every_ten_seconds.next_after(new_year + 1),
            Some(new_year + 10_000)
        );
        // Five fields: at second 0.
        let hourly = Schedule::parse("0 * * * *", "UTC").unwrap();
        assert_eq!(hourly.next_after(new_year), Some(new_year + 3_600_000));
        // 09:00 in Paris is 08:00 UTC in winter.
        let nine_in_paris = Schedule::parse("0 0 9 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            nine_in_paris.next_after(new_year),
            Some(new_year + 8 * 3_600_000)
        );
        assert!(
            Schedule::parse("* * *", "UTC")
                .unwrap_err()
                .contains("invalid")
        );
        assert!(
            Schedule::parse("* * * * *", "Mars/Olympus")
                .unwrap_err()
                .contains("IANA")
        );
        // Schedules that never fire, and field counts that are not cron's.
        assert!(
            Schedule::parse("0 0 0 30 2 *", "UTC")
                .unwrap_err()
                .contains("never fires")
        );
        assert!(
            Schedule::parse("0 0 0 29 2 *", "UTC").is_ok(),
            "leap days come"
        );
        for fields in ["* * * *", "* * * * * * *", "@daily"] {
            assert!(
                Schedule::parse(fields, "UTC")
                    .unwrap_err()
                    .contains("fields"),
                "{fields}"
            );
        }
    }
}
