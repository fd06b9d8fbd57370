//! Local time: the fixed [`UtcOffset`] and the check of IANA time-zone names.
//!
//! A zone name is checked for its shape first (it ends up in a `SET TIME ZONE` for
//! PostgreSQL and, later, in a file path, so nothing but the characters IANA names use, and
//! no `.` or `..` component, ever gets through). Where the system has a zone database
//! ([`ZONEINFO_DIR`]) the name must also name a zone file in it, so a typo is caught at
//! start-up; a scratch container has no such directory, and there a well-formed name is
//! accepted and PostgreSQL, which has its own copy, has the last word.

use std::fmt;
use std::io::Read;
use std::path::Path;

/// Where Debian, Alpine and most other systems keep the IANA zone files.
pub const ZONEINFO_DIR: &str = "/usr/share/zoneinfo";
/// The longest IANA name today is 32 bytes (`America/Argentina/ComodRivadavia`).
const MAX_TIME_ZONE_BYTES: usize = 64;

/// The offset used for dates in the dashboard and the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UtcOffset {
    minutes: i32,
}

impl UtcOffset {
    /// `minutes` takes the sign of `hours` when `hours` is negative, so `-3` hours and `30`
    /// minutes is `-03:30`, as people write it. Errors name the offending key.
    pub fn from_hours_minutes(
        hours: i64,
        minutes: i64,
    ) -> Result<UtcOffset, (&'static str, String)> {
        if !(-23..=23).contains(&hours) {
            return Err((
                "utc_offset.hours",
                format!("must be between -23 and 23, got {hours}"),
            ));
        }
        if !(-59..=59).contains(&minutes) {
            return Err((
                "utc_offset.minutes",
                format!("must be between -59 and 59, got {minutes}"),
            ));
        }
        if hours > 0 && minutes < 0 {
            return Err((
                "utc_offset.minutes",
                format!("must not be negative when the hours ({hours}) are positive"),
            ));
        }
        let minutes = if hours < 0 { -minutes.abs() } else { minutes };
        Ok(UtcOffset {
            minutes: (hours * 60 + minutes) as i32,
        })
    }

    pub fn from_minutes(minutes: i32) -> UtcOffset {
        UtcOffset { minutes }
    }

    pub fn total_minutes(self) -> i32 {
        self.minutes
    }

    pub fn total_seconds(self) -> i64 {
        i64::from(self.minutes) * 60
    }
}

/// RFC 3339 form: `+02:00`, `-03:30`, `+00:00`.
impl fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minutes < 0 { '-' } else { '+' };
        let abs = self.minutes.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", abs / 60, abs % 60)
    }
}

/// Checks that `name` is a well-formed IANA time-zone name and, when `zoneinfo` is a
/// directory, that it names a zone file there. `UTC` is always accepted. The error is the
/// end of a sentence starting with the setting's name.
pub fn check_time_zone(name: &str, zoneinfo: &Path) -> Result<(), String> {
    if !is_well_formed_zone_name(name) {
        return Err(format!(
            "(`{name}`) must be an IANA time zone name such as Europe/Berlin or UTC: letters, \
             digits, `_`, `+` and `-` in `/`-separated parts, at most {MAX_TIME_ZONE_BYTES} characters"
        ));
    }
    if name == "UTC" || !zoneinfo.is_dir() || is_zone_file(&zoneinfo.join(name)) {
        return Ok(());
    }
    Err(format!(
        "names an unknown time zone `{name}` (there is no such zone in {})",
        zoneinfo.display()
    ))
}

fn is_well_formed_zone_name(name: &str) -> bool {
    (1..=MAX_TIME_ZONE_BYTES).contains(&name.len())
        && name.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
        })
}

/// A regular file (after symlinks: `UTC` links to `Etc/UTC` on Debian) that starts with the
/// TZif magic, so the database's other files (`leapseconds`, `SECURITY`) are not zones.
fn is_zone_file(path: &Path) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut magic = [0; 4];
    file.metadata().is_ok_and(|m| m.is_file())
        && file.read_exact(&mut magic).is_ok()
        && &magic == b"TZif"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_format_as_rfc3339() {
        let offset = |h, m| UtcOffset::from_hours_minutes(h, m).unwrap().to_string();
        assert_eq!(offset(0, 0), "+00:00");
        assert_eq!(offset(5, 45), "+05:45");
        assert_eq!(offset(-3, 30), "-03:30");
        assert_eq!(offset(-3, -30), "-03:30");
        assert_eq!(offset(0, -30), "-00:30");
        assert!(UtcOffset::from_hours_minutes(24, 0).is_err());
        assert!(UtcOffset::from_hours_minutes(3, -30).is_err());
        assert_eq!(UtcOffset::from_minutes(-210).total_seconds(), -12600);
    }

    /// A zone database of two zones and one file that is not a zone.
    fn fake_zoneinfo() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "oxitraffic-zoneinfo-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(dir.join("Europe")).unwrap();
        std::fs::write(dir.join("Europe/Berlin"), b"TZif2...").unwrap();
        std::fs::write(dir.join("Etc+GMT"), b"TZif2...").unwrap();
        std::fs::write(dir.join("leapseconds"), b"# leap seconds").unwrap();
        dir
    }

    #[test]
    fn names_must_be_well_formed_wherever_they_are_checked() {
        let nowhere = Path::new("/nonexistent/zoneinfo");
        for good in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
            "Etc/GMT-14",
        ] {
            assert_eq!(check_time_zone(good, nowhere), Ok(()), "{good}");
        }
        let too_long = "A".repeat(65);
        for bad in [
            "",
            "/Europe/Berlin",
            "Europe/Berlin/",
            "Europe//Berlin",
            "../etc/passwd",
            "Europe/./Berlin",
            "Europe/..",
            ".",
            "Europe/Berlin ",
            "Europe\\Berlin",
            "Europe/Berlin\n",
            "Zürich",
            too_long.as_str(),
        ] {
            let error = check_time_zone(bad, nowhere).unwrap_err();
            assert!(
                error.contains("must be an IANA time zone name"),
                "{bad:?}: {error}"
            );
        }
        assert_eq!(check_time_zone(&"A".repeat(64), nowhere), Ok(()));
    }

    #[test]
    fn with_a_zone_database_the_name_must_be_a_zone_in_it() {
        let dir = fake_zoneinfo();
        assert_eq!(check_time_zone("Europe/Berlin", &dir), Ok(()));
        assert_eq!(check_time_zone("Etc+GMT", &dir), Ok(()));
        assert_eq!(check_time_zone("UTC", &dir), Ok(()), "UTC needs no file");
        for unknown in [
            "Europe/Berlim",
            "Europe",
            "leapseconds",
            "Mars/Olympus_Mons",
        ] {
            let error = check_time_zone(unknown, &dir).unwrap_err();
            assert!(
                error.starts_with(&format!("names an unknown time zone `{unknown}`")),
                "{unknown}: {error}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_system_zone_database_is_used_when_present() {
        let system = Path::new(ZONEINFO_DIR);
        if system.is_dir() {
            assert_eq!(check_time_zone("Europe/Berlin", system), Ok(()));
            assert!(check_time_zone("Europe/Atlantis", system).is_err());
        } else {
            assert_eq!(check_time_zone("Europe/Atlantis", system), Ok(()));
        }
    }
}
